"""The benchmark in --quick mode: every number is produced and sane (not that it is fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_forward_flops_counts_dense_and_attention():
    from arenapref.bench.hardware import forward_flops

    # 2 sequences: dense 2*P per token; attention 4*layers*width*L^2 per sequence.
    assert forward_flops([3, 5], params=10, num_layers=2, attention_width=4) == 2 * 10 * 8 + 4 * 2 * 4 * (9 + 25)


def test_dense_layer_shapes_count_each_decoder_product_once(tiny_checkpoint):
    import torch

    from arenapref.bench.hardware import dense_layer_rate, dense_layer_shapes
    from arenapref.config import RunConfig
    from arenapref.model.modeling import attach_new_adapter, load_base_model

    run = RunConfig.from_config({"model": {}})
    model = attach_new_adapter(
        load_base_model(tiny_checkpoint, run.model, torch.device("cpu"), torch.float32, 0), run.model
    )
    # The tiny Llama: width 64, 4 heads of 16, 2 key-value heads, MLP 128, 4 layers. The adapter's
    # wrappers and factors and the classification layer are not decoder products.
    assert dense_layer_shapes(model) == {(64, 64): 8, (64, 32): 8, (64, 128): 8, (128, 64): 4}
    assert dense_layer_rate({(64, 32): 2}, tokens=16, device=torch.device("cpu"), dtype=torch.float32, seconds=0.01) > 0


def test_padded_tokens_counts_each_batch_at_its_longest_row():
    from arenapref.model.batching import padded_tokens

    lengths = [5, 1, 3, 3]
    assert padded_tokens(lengths, [np.array([0, 1]), np.array([2, 3])]) == 2 * 5 + 2 * 3


def test_counting_collator_counts_padding(tiny_tokenizer):
    from arenapref.bench.baseline import CountingCollator

    collator = CountingCollator(tiny_tokenizer)
    batch = collator([{"input_ids": [5, 6, 7]}, {"input_ids": [5]}])
    assert batch["input_ids"].shape == (2, 3)
    assert (collator.count.real, collator.count.computed) == (4, 6)


def test_preprocessing_table_repeats_rows_as_distinct_rows(tmp_path, real_or_sample_csv):
    from arenapref.bench.preprocessing import build_table, measure
    from arenapref.data.preprocess import preprocess_train

    source_table, source_report = preprocess_train(real_or_sample_csv, n_folds=5, seed=0)
    out = tmp_path / "big.csv"
    build_table(real_or_sample_csv, 3 * source_report.rows_in, out)
    table, report = preprocess_train(out, n_folds=5, seed=0)
    assert report.rows_in == 3 * source_report.rows_in
    # Copies carry a marked prompt: each is kept or dropped exactly as its source row was.
    assert table.height == 3 * source_table.height
    assert table["id"].n_unique() == table.height
    ours, base = measure("pipeline", out), measure("pandas_literal", out)
    assert ours["rows_out"] == table.height
    assert 0 < base["rows_out"] <= report.rows_in
    assert ours["seconds"] > 0 and base["peak_rss_mb"] > 0


@pytest.fixture
def real_or_sample_csv(tmp_path) -> Path:
    real = ROOT.parent / "shared" / "data" / "real" / "train.csv"
    if real.exists():
        return real
    from arenapref.data.sample_data import write_sample

    write_sample(tmp_path / "sample", n_train=120, n_test=5, seed=0)
    return tmp_path / "sample" / "train.csv"


FAKE_GPU_CHECK = {
    "machine": {
        "gpu": "NVIDIA H200",
        "memory_gib": 139.8,
        "capability": "9.0",
        "device": "cuda:0",
        "torch": "2.13.0",
        "transformers": "5.23.0",
        "peft": "0.21.2",
    },
    "date": "2026-11-28",
    "quantization": "nf4",
    "seconds": 300.0,
    "training": [
        {
            "dtype": "bfloat16",
            "gradient_checkpointing": True,
            "rows": 4,
            "length": 2048,
            "measured_peak_gib": 7.1,
            "planned_peak_gib": 7.6,
            "planned_over_measured": 1.07,
            "tokens_per_second": 5000.0,
        }
    ],
    "inference": [{"error": "RuntimeError: CUDA out of memory"}],
}


def run_quick_benchmark(tmp_path: Path, checkpoint: Path, *extra: str) -> tuple[Path, Path]:
    """arenapref-benchmark --quick on a 200-row generated sample; the JSON and markdown it wrote."""
    from arenapref.data.sample_data import write_sample

    write_sample(tmp_path / "sample", n_train=200, n_test=5, seed=0)
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    settings = {"model": {"max_length": 128}, "train": {"batch_size": 8}, "predict": {"tokens_per_batch": 1024}}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "arenapref.commands.benchmark",
            "--quick",
            *extra,
            "--train",
            str(tmp_path / "sample" / "train.csv"),
            "--checkpoint",
            str(checkpoint),
            "--config",
            json.dumps(settings),
            "--out-json",
            str(out_json),
            "--out-md",
            str(out_md),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out_json, out_md


@pytest.mark.slow
def test_quick_benchmark_produces_every_number(tmp_path, tiny_checkpoint):
    gpu_check = tmp_path / "gpu_check.json"
    gpu_check.write_text(json.dumps(FAKE_GPU_CHECK))
    out_json, out_md = run_quick_benchmark(tmp_path, tiny_checkpoint, "--gpu-check", str(gpu_check))
    results = json.loads(out_json.read_text())
    inference, training, pre = results["inference"], results["training"], results["preprocessing"]
    assert results["mode"] == "quick"
    assert all(rate > 1e8 for rate in results["matmul_flops_per_s"].values())
    for side in (inference["ours"], inference["tuned"], inference["baseline"]):
        assert side["real_tokens_per_s"] > 0 and 0 < side["padding_efficiency"] <= 1
        assert 0 < side["fraction_of_matmul_rate"] < 5
    # Sorted, token-budget batches pad less than the baseline's batches of 8 in file order.
    assert inference["ours"]["padding_efficiency"] >= inference["baseline"]["padding_efficiency"]
    # Same model, same ids, same precision: the two inference paths compute the same probabilities.
    assert inference["max_probability_difference"] < 1e-3
    # The tuned Trainer predicts in ours' precision over sorted rows, and gives the rows back in order.
    assert inference["tuned"]["dtype"] == inference["ours"]["dtype"]
    assert inference["tuned_max_probability_difference"] < 0.05
    if "ours_same_precision" in inference:  # bf16 inference on a CPU that has it
        assert inference["ours"]["dtype"] == "bfloat16" and inference["ours_same_precision"]["dtype"] == "float32"
        assert inference["precision_max_probability_difference"] < 0.1
    assert inference["baseline"]["dtype"] == "float32"  # the Trainer on a CPU
    # The model's dense layers as bare products: each side's fraction of it is its rate over it.
    roof = inference["dense_layer_roof"]
    assert roof["flops_per_s"] > 1e8 and roof["dtype"] == inference["ours"]["dtype"]
    assert roof["ours_fraction"] == pytest.approx(inference["ours"]["flops_per_s"] / roof["flops_per_s"])
    assert roof["most_over_tuned"] == pytest.approx(1 / roof["tuned_fraction"])
    sides = (training["ours"], training["tuned"], training["baseline"])
    assert {side["optimizer_steps"] for side in sides} == {2}
    # The tuned Trainer takes ours' batch shape and precision.
    assert (training["tuned"]["batch_size"], training["tuned"]["grad_accum"]) == (
        training["ours"]["batch_size"],
        training["ours"]["grad_accum"],
    )
    assert training["tuned"]["dtype"] == training["ours"]["dtype"]
    for side in sides:
        assert side["real_tokens_per_s"] > 0 and np.isfinite(side["log_loss"])
        assert 0 < side["padding_efficiency"] <= 1 and 0 < side["fraction_of_matmul_rate"] < 5
    # The paired difference is the difference of the two means, with a standard error beside it.
    assert training["log_loss_difference"] == pytest.approx(
        training["ours"]["log_loss"] - training["baseline"]["log_loss"], abs=1e-9
    )
    assert training["log_loss_difference_over_tuned"] == pytest.approx(
        training["ours"]["log_loss"] - training["tuned"]["log_loss"], abs=1e-9
    )
    assert training["log_loss_difference_se"] > 0 and training["log_loss_difference_over_tuned_se"] > 0
    assert training["ours"]["dtype"] in ("float32", "bfloat16") and training["baseline"]["dtype"] == "float32"
    assert pre["rows"] == 2000 and pre["ours"]["rows_out"] > 0 and pre["baseline"]["rows_out"] > 0
    assert set(results["targets"]) == {
        "inference_tokens_per_s_over_tuned",
        "training_tokens_per_s_over_tuned",
        "inference_fraction_of_matmul_rate",
        "padding_efficiency",
        "preprocessing_speedup",
        "preprocessing_peak_memory_ratio",
        "training_held_out_log_loss_vs_tuned",
    }
    assert results["targets"]["inference_tokens_per_s_over_tuned"]["measured"] == inference["speedup_over_tuned"]
    table = out_md.read_text()
    assert "| measure | ours | tuned Trainer | original | ours / tuned | ours / original |" in table
    assert "inference real tokens/s" in table and "preprocessing seconds (2,000 rows" in table
    assert "inference fraction of this model's dense layers as bare matrix products (1,024 tokens" in table
    # The GPU section shows the GPU check's figures when it has run.
    assert "GPU check on NVIDIA H200" in table and "| nf4 bfloat16 + checkpointing | 4 x 2048 | 7.1 |" in table


@pytest.mark.slow
def test_training_seed_study_reports_every_seed(tmp_path, tiny_checkpoint):
    out_json, out_md = run_quick_benchmark(tmp_path, tiny_checkpoint, "--training-seeds", "3", "5")
    study = json.loads(out_json.read_text())
    assert [r["seed"] for r in study["runs"]] == [3, 5]
    differences = [r["log_loss_difference"] for r in study["runs"]]
    assert differences[0] != differences[1]  # the seed reaches the training runs
    assert study["mean_log_loss_difference"] == pytest.approx(np.mean(differences))
    assert 0 <= study["ours_better_in"] <= 2
    assert "| mean |" in out_md.read_text()


@pytest.mark.slow
def test_oof_comparison_scores_every_fold(tmp_path, tiny_checkpoint):
    out_json, out_md = run_quick_benchmark(tmp_path, tiny_checkpoint, "--oof-comparison", "2")
    study = json.loads(out_json.read_text())
    assert sorted(study["per_fold"]) == ["0", "1"] and study["data"]["folds"] == 2
    for side in ("ours", "tuned", "original"):
        assert np.isfinite(study[side]["log_loss"]) and study[side]["optimizer_steps"] > 0
    # The tuned Trainer takes ours' batch shape, so it takes as many optimizer steps.
    assert study["tuned"]["optimizer_steps"] == study["ours"]["optimizer_steps"]
    assert (study["tuned"]["batch_size"], study["tuned"]["grad_accum"]) == (
        study["ours"]["batch_size"],
        study["ours"]["grad_accum"],
    )
    for side in ("tuned", "original"):
        assert np.isfinite(study[f"log_loss_difference_{side}"]) and study[f"log_loss_difference_{side}_se"] > 0
    table = out_md.read_text()
    assert "| all |" in table and "Ours - the tuned Trainer:" in table


@pytest.mark.slow
def test_oof_comparison_over_training_seeds_keeps_the_folds(tmp_path, tiny_checkpoint):
    out_json, out_md = run_quick_benchmark(tmp_path, tiny_checkpoint, "--oof-comparison", "2", "--oof-seeds", "1", "2")
    study = json.loads(out_json.read_text())
    assert [run["seed"] for run in study["runs"]] == [1, 2]
    # Only the training seed changes: the folds are those of the configured seed in every run.
    assert {run["fold_seed"] for run in study["runs"]} == {42}
    assert all("original" not in run and np.isfinite(run["tuned"]["log_loss"]) for run in study["runs"])
    ours = [run["ours"]["log_loss"] for run in study["runs"]]
    assert ours[0] != ours[1]  # another seed trains another adapter
    differences = [run["log_loss_difference_tuned"] for run in study["runs"]]
    assert study["mean_log_loss_difference"] == pytest.approx(np.mean(differences))
    assert "| mean |" in out_md.read_text() and "of 2 seeds" in out_md.read_text()


def test_attention_comparison_alternates_both_and_they_agree(tmp_path, tiny_checkpoint):
    out_json, out_md = run_quick_benchmark(tmp_path, tiny_checkpoint, "--attention-comparison", "2")
    result = json.loads(out_json.read_text())
    assert result["rows"] == 48 and result["attention"] == "sliced_cpu"
    assert [len(result["seconds"][side]) for side in ("eager", "sliced")] == [2, 2]
    assert all(s > 0 for s in result["seconds"]["eager"] + result["seconds"]["sliced"])
    expected = [e / s for e, s in zip(result["seconds"]["eager"], result["seconds"]["sliced"], strict=True)]
    assert result["speedup_per_round"] == pytest.approx(expected)
    assert result["max_probability_difference"] < 1e-2  # the same arithmetic in another order (bf16 at most)
    table = out_md.read_text()
    assert "| 1 |" in table and "| 2 |" in table and "Median eager / sliced" in table


def test_shared_folds_comparison_runs_and_agrees(tmp_path, tiny_checkpoint):
    """`benchmark.py --shared-folds`: both ways give the same probabilities; the table is written."""
    from arenapref.bench.folds import bench_shared_folds, shared_folds_table
    from arenapref.config import RunConfig
    from arenapref.model.runtime import Runtime

    run = RunConfig.from_config({"model": {"max_length": 64}, "predict": {"precision": "fp32"}})
    rt = Runtime.create(run, tiny_checkpoint)
    ids = [[1, *range(5, 5 + n)] for n in (8, 12, 20, 30, 9, 15, 40, 3)]
    result = bench_shared_folds(tiny_checkpoint, run, rt, ids, folds=3)
    assert result["max_probability_difference"] < 1e-5 and result["shared_layers"] == 2
    assert result["expected_speedup"] == pytest.approx(3 / 2)  # (1 + 3) / 2 passes instead of 3
    assert result["seconds_shared"] > 0 and "| all folds on one model" in shared_folds_table(result)
