"""`make gpu-check` on a CPU with a tiny shape: every case runs, the planner holds, the pipeline
part ends in a submission; and the check imports nothing a bare CUDA machine lacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_gpu_check_runs_every_case_on_a_cpu(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_check.py"),
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--rows",
            "2",
            "--length",
            "128",
            "--steps",
            "2",
            "--predict-batches",
            "1",
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    cases = {(case["dtype"], case["gradient_checkpointing"]) for case in report["training"]}
    assert cases == {("bfloat16", True), ("bfloat16", False), ("float16", True)}
    for case in report["training"] + report["inference"]:
        assert "error" not in case, case
        assert 0.85 <= case["planned_over_measured"] <= 1.15, case
        # (On a CPU fp16 matrix products are emulated, so that case's fraction may exceed 1.)
        assert case["tokens_per_second"] > 0 and case["fraction_of_matmul_rate"] > 0
    fp16 = next(case for case in report["training"] if case["dtype"] == "float16")
    assert fp16["loss_scale"] > 0  # trained under the gradient scaler
    plain = next(c for c in report["training"] if c["dtype"] == "bfloat16" and not c["gradient_checkpointing"])
    checkpointed = next(c for c in report["training"] if c["dtype"] == "bfloat16" and c["gradient_checkpointing"])
    assert checkpointed["saved_activations_gib"] < plain["saved_activations_gib"]
    assert 0 < report["inference"][0]["fraction_of_matmul_rate"]
    # Two trainings from one seed on a CPU repeat exactly.
    same = report["determinism"]
    assert same["max_loss_difference"] == 0 and same["max_adapter_difference"] == 0, same
    pipeline = report["pipeline"]
    assert pipeline["returncode"] == 0 and pipeline["runtime"]["device"] == "cpu", pipeline
    assert 0 < pipeline["oof_log_loss"] < 3
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| none bfloat16 + checkpointing | 2 x 128 |" in table and "submission in" in table
    assert "Two trainings from one seed:" in table
    assert not list(tmp_path.glob("tmp*"))  # the random checkpoint is cleaned up


def test_gpu_check_imports_only_what_a_bare_cuda_machine_can_carry():
    probe = (
        "import sys; sys.path.insert(0, 'src'); import arenapref.bench.gpu_check, arenapref.train.training, "
        "arenapref.cli; print(sorted(m for m in ('polars', 'snakemake', 'trl', 'pandas', 'sklearn', "
        "'matplotlib', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
