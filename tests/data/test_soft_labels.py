"""A teacher's probabilities (data.soft_labels): validated like every input, attached to main and
extra rows, swapped with the responses, and the only label of pairs without a winner."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
from conftest import write_csv

from arenapref.data.augment import swap_responses
from arenapref.data.extra import join_extra, read_extra_file
from arenapref.data.parsing import NO_LABEL, SUBMISSION_COLUMNS, TEST_COLUMNS, TRAIN_COLUMNS
from arenapref.data.preprocess import preprocess_train
from arenapref.data.soft_labels import TEACHER_COLUMNS, attach_soft_labels, read_soft_labels
from arenapref.errors import DataError


def main_csv(tmp_path):
    rows = [
        [i, "m1", "m2", json.dumps([f"main question number {i}"]), '["a"]', '["b"]', *((1, 0, 0), (0, 1, 0))[i % 2]]
        for i in range(1, 13)
    ]
    return write_csv(tmp_path / "train.csv", list(TRAIN_COLUMNS), rows)


def test_soft_labels_are_read_and_checked(tmp_path):
    good = write_csv(tmp_path / "soft.csv", list(SUBMISSION_COLUMNS), [[1, 0.7, 0.2, 0.1], [2, 0, 1, 0]])
    table = read_soft_labels(good)
    assert table.columns == ["id", *TEACHER_COLUMNS]
    assert table.row(0) == (1, 0.7, 0.2, 0.1)
    table.rename(dict(zip(TEACHER_COLUMNS, SUBMISSION_COLUMNS[1:], strict=True))).write_parquet(tmp_path / "s.parquet")
    assert read_soft_labels(tmp_path / "s.parquet").equals(table)
    cases = {
        "over one": (
            [[1, 1.5, 0, 0]],
            r"row id=1, field 'winner_model_a': a probability in \[0, 1\] is needed, got '1.5'",
        ),
        "text": ([[1, 0.5, "half", 0]], r"row id=1, field 'winner_model_b': a probability in \[0, 1\] is needed"),
        "sum": ([[1, 0.5, 0.2, 0.2]], r"row id=1, field 'winner_\*': the three probabilities sum to 0.900000, not 1"),
        "nan": ([[3, "nan", 0.5, 0.5]], r"row id=3, field 'winner_model_a'"),
    }
    for rows, message in cases.values():
        with pytest.raises(DataError, match=message):
            read_soft_labels(write_csv(tmp_path / "bad.csv", list(SUBMISSION_COLUMNS), rows))


def test_pairs_without_a_winner_train_on_their_teacher_alone_and_are_dropped_without_one(tmp_path):
    main, _ = preprocess_train(main_csv(tmp_path), n_folds=3, seed=0)
    pairs = [[900 + i, json.dumps([f"an unlabelled question {i}"]), '["yes"]', '["no"]'] for i in range(3)]
    unlabelled = read_extra_file(write_csv(tmp_path / "pairs.csv", list(TEST_COLUMNS), pairs))
    assert unlabelled[0]["label"].to_list() == [NO_LABEL] * 3
    soft = read_soft_labels(
        write_csv(
            tmp_path / "soft.csv",
            list(SUBMISSION_COLUMNS),
            [[900, 0.6, 0.3, 0.1], [901, 0.2, 0.2, 0.6], [1, 0.5, 0.4, 0.1]],
        )
    )
    extra, summary = join_extra(main, [unlabelled], soft=soft)
    assert extra["id"].to_list() == [900, 901] and summary["no_winner_nor_teacher"] == 1
    assert extra.select(TEACHER_COLUMNS).row(0) == (0.6, 0.3, 0.1)
    main = attach_soft_labels(main, soft)
    assert main.filter(pl.col("id") == 1).select(TEACHER_COLUMNS).row(0) == (0.5, 0.4, 0.1)
    assert main.filter(pl.col("id") == 2)["teacher_model_a"].is_null().all()
    # Swapping the responses swaps the teacher's A and B; no winner stays no winner.
    swapped = swap_responses(extra)
    assert swapped.select(TEACHER_COLUMNS).row(0) == (0.3, 0.6, 0.1)
    assert swapped["label"].to_list() == [NO_LABEL, NO_LABEL]
    assert swap_responses(main.head(2))["label"].to_list() == [1 - x for x in main.head(2)["label"].to_list()]


def test_preprocess_program_writes_the_extra_rows_and_reports_them(tmp_path):
    pairs = [[900, '["an unlabelled question"]', '["yes"]', '["no"]'], [901, '["another one"]', '["y"]', '["n"]']]
    write_csv(tmp_path / "pairs.csv", list(TEST_COLUMNS), pairs)
    write_csv(tmp_path / "soft.csv", list(SUBMISSION_COLUMNS), [[900, 0.6, 0.3, 0.1]])
    write_csv(tmp_path / "test.csv", list(TEST_COLUMNS), [[5, '["q"]', '["a"]', '["b"]']])
    out = {name: tmp_path / f"{name}.parquet" for name in ("train_out", "test_out", "extra_out")}
    command = [sys.executable, "-m", "arenapref.commands.preprocess", "--train", str(main_csv(tmp_path))]
    command += ["--test", str(tmp_path / "test.csv"), "--n-folds", "3", "--extra", str(tmp_path / "pairs.csv")]
    command += ["--soft-labels", str(tmp_path / "soft.csv"), "--out-extra", str(out["extra_out"])]
    command += ["--out-train", str(out["train_out"]), "--out-test", str(out["test_out"])]
    command += ["--report", str(tmp_path / "report.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["extra"]["rows"] == 1 and report["extra"]["no_winner_nor_teacher"] == 1
    assert report["extra"]["rows_per_fold"] == {"0": 1, "1": 1, "2": 1}
    assert report["soft_labels"] == {"rows": 1, "main_rows": 0, "extra_rows": 1, "unmatched": 0}
    assert pl.read_parquet(out["extra_out"])["id"].to_list() == [900]
    assert "teacher_tie" in pl.read_parquet(out["train_out"]).columns
