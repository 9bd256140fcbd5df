"""bitsandbytes is imported only where a layer is quantized: on a CPU it logs a warning about a
missing `kernels` package when imported, which every CPU job's log had carried."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("bitsandbytes")

# In a fresh process: the unquantized path, then (in the same process) a quantized model, whose LoRA
# layers must still be bitsandbytes-aware.
SCRIPT = """
import json, sys, torch
from arenapref.config import RunConfig
from arenapref.model.modeling import attach_new_adapter, for_inference, load_base_model, load_trained_adapter
checkpoint, adapter_dir = sys.argv[1], sys.argv[2]
run = RunConfig.from_config({"model": {"quantization": "none"}})
model = attach_new_adapter(load_base_model(checkpoint, run.model, torch.device("cpu"), torch.float32, 0), run.model)
model.save_pretrained(adapter_dir)
base = load_base_model(checkpoint, run.model, torch.device("cpu"), torch.float32, 0)
for_inference(load_trained_adapter(base, adapter_dir), torch.bfloat16)
after_unquantized = "bitsandbytes" in sys.modules
print("QUANTIZED FROM HERE", file=sys.stderr, flush=True)
nf4 = RunConfig.from_config({"model": {"quantization": "nf4"}})
quantized = attach_new_adapter(load_base_model(checkpoint, nf4.model, torch.device("cpu"), torch.float32, 0), nf4.model)
lora_types = sorted({type(m).__module__ for m in quantized.modules() if hasattr(m, "lora_A")})
print(json.dumps({"after_unquantized": after_unquantized, "lora_types": lora_types}))
"""


def test_unquantized_models_never_import_bitsandbytes_and_quantized_ones_still_do(tiny_checkpoint, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_checkpoint), str(tmp_path / "adapter")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["after_unquantized"] is False
    # The warning came with the import; nothing before the quantized load may print it.
    before_nf4 = done.stderr.split("QUANTIZED FROM HERE")[0]
    assert "kernels" not in before_nf4, before_nf4[-2000:]
    assert result["lora_types"] == ["peft.tuners.lora.bnb"], result


def test_a_cpu_jobs_log_has_no_bitsandbytes_warning(tiny_checkpoint, tmp_path):
    """The programs the rules run: train_fold and predict_fold on a CPU, their whole output read."""
    from conftest import VENV_BIN

    from arenapref.data.preprocess import preprocess_test, preprocess_train
    from arenapref.data.sample_data import write_sample

    sample = write_sample(tmp_path / "sample", n_train=40, n_test=4, seed=1)
    preprocess_train(sample["train"], n_folds=2, seed=0)[0].write_parquet(tmp_path / "train.parquet")
    preprocess_test(sample["test"])[0].write_parquet(tmp_path / "test.parquet")
    settings = json.dumps({"model": {"max_length": 96}, "train": {"epochs": 1, "batch_size": 8, "chunk_size": 16}})
    common = ["--data", str(tmp_path / "train.parquet"), "--fold", "0", "--checkpoint", str(tiny_checkpoint)]
    common += ["--config", settings]
    train_job = [str(VENV_BIN / "arenapref-train-fold"), *common, "--adapter-dir", str(tmp_path / "adapter")]
    train_job += ["--log", str(tmp_path / "log.json"), "--resume-dir", str(tmp_path / "resume")]
    predict_job = [str(VENV_BIN / "arenapref-predict-fold"), *common, "--adapter-dir", str(tmp_path / "adapter")]
    predict_job += ["--test", str(tmp_path / "test.parquet"), "--out-oof", str(tmp_path / "oof.parquet")]
    predict_job += ["--out-test", str(tmp_path / "test_preds.parquet")]
    for command in (train_job, predict_job):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "bitsandbytes" not in done.stderr and "kernels" not in done.stderr, done.stderr[-2000:]
