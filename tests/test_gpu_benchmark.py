"""`make gpu-benchmark` on a CPU with a tiny shape: it runs with polars and snakemake unimportable
(as on a bare CUDA machine), every side of the comparison measures, the rows' lengths are those of
the real rows as the pipeline builds them; bad rows are one-line errors or counted drops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_csv

ROOT = Path(__file__).resolve().parents[1]
HEADER = ["id", "model_a", "model_b", "prompt", "response_a", "response_b"]
HEADER += ["winner_model_a", "winner_model_b", "winner_tie"]


def bare_environment(tmp_path: Path) -> dict:
    """PYTHONPATH with stand-ins that refuse to import polars and snakemake."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for name in ("polars", "snakemake"):
        (blocked / f"{name}.py").write_text('raise ImportError("not on a bare CUDA machine")\n')
    return {**os.environ, "PYTHONPATH": str(blocked)}


@pytest.mark.slow
def test_gpu_benchmark_runs_on_real_rows_without_polars_or_snakemake(tmp_path, real_data, tiny_checkpoint):
    env = bare_environment(tmp_path)
    refused = subprocess.run([sys.executable, "-c", "import polars"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "not on a bare CUDA machine" in refused.stderr
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_benchmark.py"),
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--quick",
            "--max-length",
            "192",
            "--train",
            str(real_data / "train.csv"),
            "--tokenizer",
            str(tiny_checkpoint),
            "--out-dir",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "gpu_benchmark.json").read_text())
    assert list(report["formats"]) == ["none"]  # no 4-bit kernels on a CPU
    entry = report["formats"]["none"]
    for part in ("inference", "training"):
        assert "error" not in entry[part], entry[part]
        for side in ("ours", "tuned", "baseline"):
            assert entry[part][side]["real_tokens_per_s"] > 0
            assert 0 < entry[part][side]["padding_efficiency"] <= 1
            assert entry[part][side]["fraction_of_matmul_rate"] > 0
    # Same model, same ids, same precision: our predict path and Trainer.predict agree.
    assert entry["inference"]["max_probability_difference"] < 1e-4
    assert entry["inference"]["rows"] == report["sizes"]["inference_rows"] == 48
    training = entry["training"]
    assert training["ours"]["optimizer_steps"] == training["tuned"]["optimizer_steps"] == 2
    assert np.isfinite(training["log_loss_difference_over_tuned"])

    # The lengths are the real rows' as the pipeline tokenizes and builds them.
    from arenapref.bench.gpu_benchmark import read_rows
    from arenapref.config import RunConfig
    from arenapref.data.text import encode_with_lengths
    from arenapref.model.modeling import load_tokenizer
    from arenapref.model.runtime import Runtime

    rows, labels, dropped = read_rows(real_data / "train.csv")
    assert report["data"]["rows"] == len(labels) and report["data"]["dropped_empty_text"] == dropped
    rt = Runtime.create(RunConfig.from_config({"model": {"max_length": 192}, "device": "cpu"}), tiny_checkpoint)
    ids, _ = encode_with_lengths(load_tokenizer(tiny_checkpoint), rows, rt.builder)
    lengths = report["lengths"]
    assert lengths["rows"] == len(ids)
    assert lengths["mean_tokens"] == pytest.approx(np.mean([len(x) for x in ids]))
    assert lengths["max_tokens"] <= 192
    table = (out / "gpu_benchmark.md").read_text()
    assert "| inference real tokens/s |" in table and "| training real tokens/s |" in table
    assert "**none**" in table
    assert not list(out.glob("tmp*"))  # the random checkpoint is cleaned up


def _row(row_id, prompt='["hi"]', a='["a"]', b='["b"]', winner=(1, 0, 0)):
    return [row_id, "m1", "m2", prompt, a, b, *winner]


def test_read_rows_names_the_row_and_field_or_counts_the_drop(tmp_path):
    from arenapref.bench.gpu_benchmark import read_rows
    from arenapref.errors import DataError

    good = write_csv(tmp_path / "good.csv", HEADER, [_row(1), _row(2, b="", winner=(0, 0, 1)), _row(3, a="[null]")])
    rows, labels, dropped = read_rows(good)
    assert labels == [0, 0] and dropped == 1  # row 2's empty response is dropped and counted
    assert rows["response_a"] == [["a"], [""]]

    bad_json = write_csv(tmp_path / "bad.csv", HEADER, [_row(1), _row(77, a='["unclosed')])
    with pytest.raises(DataError, match=r"bad\.csv, row id=77, field 'response_a': not valid JSON"):
        read_rows(bad_json)
    bad_label = write_csv(tmp_path / "label.csv", HEADER, [_row(5, winner=(1, 1, 0))])
    with pytest.raises(DataError, match=r"row id=5, field 'winner'.*one 1 and two 0s"):
        read_rows(bad_label)
    missing = write_csv(tmp_path / "missing.csv", HEADER[:-1], [_row(1)[:-1]])
    with pytest.raises(DataError, match=r"line 1: missing column\(s\): winner_tie"):
        read_rows(missing)


def test_seeded_folds_are_equal_and_repeat():
    from arenapref.bench.gpu_benchmark import seeded_folds

    folds = seeded_folds(103, seed=42)
    assert sorted(np.bincount(folds)) == [20, 20, 21, 21, 21]
    assert (folds == seeded_folds(103, seed=42)).all() and (folds != seeded_folds(103, seed=7)).any()


def test_shapes_are_named_as_the_planner_knows_them():
    from arenapref.bench.gpu_common import named_shape, tiny_shape
    from arenapref.errors import ConfigError
    from arenapref.model.plan import KNOWN_SHAPES

    assert named_shape("tiny") == tiny_shape() and named_shape("gemma-2-9b") == KNOWN_SHAPES["gemma-2-9b"]
    with pytest.raises(ConfigError, match=r"unknown --shape 'llama-2'; known: tiny, llama-3.1-8b, gemma-2-9b"):
        named_shape("llama-2")
