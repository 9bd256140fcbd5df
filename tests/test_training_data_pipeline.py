"""Extra training rows, the pseudo-label stage and teachers' probabilities through the real
Snakefile on a tiny random Llama: extra and pseudo-labelled rows train folds, and never reach a
validation fold, the out-of-fold file or the metrics."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from test_pipeline import FAST_TRAIN, check_outputs, run_snakemake

from arenapref.data.extra import conversation_id

pytestmark = pytest.mark.slow


def conversations_from(train: pl.DataFrame, rows: int, shared: int) -> list[dict]:
    """Arena-conversations records: the first `shared` reuse a main row's prompt with new answers,
    the rest are new questions."""
    records = []
    for i in range(rows):
        question = json.loads(train["prompt"][i])[0] if i < shared else f"an extra question number {i} of a kind"
        records.append(
            {
                "question_id": f"extra-{i}",
                "model_a": "model-x",
                "model_b": "model-y",
                "winner": ("model_a", "model_b", "tie", "tie (bothbad)")[i % 4],
                "conversation_a": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": f"a first answer {i}"},
                ],
                "conversation_b": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": f"another answer number {i}, longer"},
                ],
                "turn": 1,
                "language": "English",
            }
        )
    return records


def test_extra_rows_and_teachers_train_folds_but_never_validate(tmp_path, tiny_checkpoint):
    config = {
        "data": {"sample": {"n_train": 60, "n_test": 8, "seed": 4}},
        "folds": {"n": 3},
        "model": {"checkpoint": str(tiny_checkpoint), "max_length": 96},
        "train": FAST_TRAIN,
    }
    run_snakemake(tmp_path, config, "results/sample/train.csv")
    sample = pl.read_csv(tmp_path / "results" / "sample" / "train.csv")
    arena = tmp_path / "arena.jsonl"
    arena.write_text("".join(json.dumps(r) + "\n" for r in conversations_from(sample, 16, shared=4)))
    config["data"]["extra_train"] = [str(arena)]
    run_snakemake(tmp_path, config)
    check_outputs(tmp_path, 3, tmp_path / "results" / "sample" / "sample_submission.csv")

    train = pl.read_parquet(tmp_path / "results" / "data" / "train.parquet")
    extra = pl.read_parquet(tmp_path / "results" / "data" / "extra.parquet")
    extra_ids = {conversation_id(f"extra-{i}") for i in range(16)}
    assert set(extra["id"].to_list()) <= extra_ids and extra.height >= 12
    report = json.loads((tmp_path / "results" / "data" / "report.json").read_text())["extra"]
    assert report["rows"] == extra.height
    # The shared prompts keep their rows out of the folds that validate those prompts.
    assert any(folds for folds in extra["excluded_folds"].to_list())
    oof = pl.read_parquet(tmp_path / "results" / "oof.parquet")
    assert sorted(oof["id"].to_list()) == sorted(train["id"].to_list())
    assert not extra_ids & set(oof["id"].to_list())
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert metrics["overall"]["rows"] == train.height
    assert sum(part["rows"] for part in metrics["per_fold"].values()) == train.height
    for fold in range(3):
        log = json.loads((tmp_path / "results" / "folds" / f"fold{fold}" / "train_log.json").read_text())
        assert log["extra_rows"] == report["rows_per_fold"][str(fold)] > 0
        assert log["rows"] == log["source_rows"] + log["extra_rows"]
        fold_oof = pl.read_parquet(tmp_path / "results" / "folds" / f"fold{fold}" / "oof.parquet")
        assert not extra_ids & set(fold_oof["id"].to_list())
    assert metrics["postprocessing"]["chosen"] and metrics["postprocessing"]["why"]

    # The pseudo-label stage: the fold ensemble labels pairs without a winner.
    pairs = tmp_path / "pairs.csv"
    pl.DataFrame(
        {
            "id": list(range(70_001, 70_007)),
            "prompt": [json.dumps([f"a pair to label, number {i}"]) for i in range(6)],
            "response_a": [json.dumps([f"yes, {i}"]) for i in range(6)],
            "response_b": [json.dumps([f"no, not at all {i}"]) for i in range(6)],
        }
    ).write_csv(pairs)
    run_snakemake(tmp_path, {**config, "pseudo_label": {"pairs": str(pairs)}}, "results/pseudo_labels/soft_labels.csv")
    soft = pl.read_csv(tmp_path / "results" / "pseudo_labels" / "soft_labels.csv")
    assert soft["id"].to_list() == list(range(70_001, 70_007))
    sums = soft.select(pl.sum_horizontal("winner_model_a", "winner_model_b", "winner_tie")).to_series()
    assert ((sums - 1).abs() < 1e-6).all()

    # A student: the pairs train on the teacher alone, every row and its swap share a batch.
    teacher = tmp_path / "soft_labels.csv"
    shutil.copy(tmp_path / "results" / "pseudo_labels" / "soft_labels.csv", teacher)
    config["data"]["extra_train"] = [str(arena), str(pairs)]
    config["data"]["soft_labels"] = str(teacher)
    config["train"] = {**FAST_TRAIN, "distill_weight": 0.5, "swap_augmentation": "pair"}
    run_snakemake(tmp_path, config)
    pair_ids = set(range(70_001, 70_007))
    oof = pl.read_parquet(tmp_path / "results" / "oof.parquet")
    assert sorted(oof["id"].to_list()) == sorted(train["id"].to_list())
    assert not (extra_ids | pair_ids) & set(oof["id"].to_list())
    log = json.loads((tmp_path / "results" / "folds" / "fold0" / "train_log.json").read_text())
    # Swapped copies double the rows; each pseudo-labelled pair (and its copy) has the teacher.
    assert log["rows"] == 2 * (log["source_rows"] + log["extra_rows"])
    assert log["rows_with_teacher"] == 2 * 6 and log["distill_weight"] == 0.5
    check_outputs(tmp_path, 3, tmp_path / "results" / "sample" / "sample_submission.csv")
