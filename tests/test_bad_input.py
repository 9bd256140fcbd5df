"""Bad input, case by case: a clear error naming file, row id and field, or a documented rule
with the row counted. Every case that reaches preprocessing checks rows_in = kept + dropped."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import write_csv

from arenapref.errors import DataError, SubmissionError
from arenapref.parsing import TRAIN_COLUMNS
from arenapref.preprocess import preprocess_test, preprocess_train
from arenapref.submission import build_submission

N_GOOD = 8  # rows that always parse, so two folds can be formed


def good_rows() -> list[list]:
    return [[i, "m1", "m2", json.dumps([f"question {i}"]), '["a"]', '["b"]', 1, 0, 0] for i in range(1, N_GOOD + 1)]


def train_csv(tmp_path, bad_row: list | None = None, header=TRAIN_COLUMNS):
    rows = good_rows() + ([bad_row] if bad_row else [])
    return write_csv(tmp_path / "train.csv", list(header), rows)


def row(prompt='["q?"]', a='["a"]', b='["b"]', label=(0, 1, 0), row_id=99):
    return [row_id, "m1", "m2", prompt, a, b, *label]


def balanced(report) -> None:
    assert report.rows_in == report.rows_kept + sum(report.dropped.values())


ERRORS = {
    "field not a JSON list": (row(prompt='{"a": 1}'), "field 'prompt': expected a JSON list"),
    "a bare JSON null": (row(a="null"), "field 'response_a': expected a JSON list of strings, got NoneType"),
    "a list of numbers": (row(b="[1, 2]"), "field 'response_b': item 0 is int"),
    "a nested list": (row(prompt='[["q"]]'), "field 'prompt': item 0 is list"),
    "a Python literal": (row(prompt="['q']"), "field 'prompt': not valid JSON"),
    "Python code": (row(prompt="[__import__('os').system('touch PWNED')]"), "field 'prompt': not valid JSON"),
    "an invalid escape": (row(a='["a\\\\x"]'.replace("\\\\", "\\")), "field 'response_a': not valid JSON"),
    "labels not one-hot": (row(label=(1, 1, 0)), "field 'winner_*': labels are not one-hot"),
    "a label that is not 0/1": (row(label=(2, 0, 0)), "field 'winner_model_a': label must be 0 or 1"),
    "a duplicate id": (row(row_id=3), "row id=3, field 'id': duplicate id"),
    "an id that is not a number": (row(row_id="x7"), "field 'id': id 'x7'"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_rows_are_errors_naming_file_row_and_field(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    bad_row, message = ERRORS[case]
    path = train_csv(tmp_path, bad_row)
    with pytest.raises(DataError) as err:
        preprocess_train(path, n_folds=2, seed=0)
    text = str(err.value)
    assert str(path) in text and message in text
    if "field 'id'" not in message or "duplicate" in message:
        assert f"row id={bad_row[0]}" in text
    assert not (tmp_path / "PWNED").exists()


EMPTY = {  # prompt, response_a, response_b: each of [], [null], [""], a blank cell, in each position
    f"{kind} in {column}": (column, value, f"{'missing' if kind == 'blank cell' else 'empty'}_{column}")
    for column in ("prompt", "response_a", "response_b")
    for kind, value in (
        ("[]", "[]"),
        ("[null]", "[null]"),
        ('[""]', '[""]'),
        ('["", null, " "]', '["", null, " "]'),
        ("blank cell", ""),
    )
}


@pytest.mark.parametrize("case", sorted(EMPTY))
def test_empty_text_is_dropped_and_counted_by_reason(tmp_path, case):
    column, value, reason = EMPTY[case]
    fields = {"prompt": '["q?"]', "a": '["a"]', "b": '["b"]'}
    fields[{"prompt": "prompt", "response_a": "a", "response_b": "b"}[column]] = value
    table, report = preprocess_train(train_csv(tmp_path, row(**fields)), n_folds=2, seed=0)
    assert dict(report.dropped) == {reason: 1} and report.dropped_ids[reason] == [99]
    assert 99 not in table["id"].to_list()
    balanced(report)


def test_null_turns_in_any_position_become_empty_text(tmp_path):
    bad = row(prompt='[null, "q?"]', a='["a", null]', b='["x", null, "y"]')
    table, report = preprocess_train(train_csv(tmp_path, bad), n_folds=2, seed=0)
    kept = table.filter(pl.col("id") == 99).row(0, named=True)
    assert kept["prompt"] == ["", "q?"] and kept["response_a"] == ["a", ""] and kept["response_b"] == ["x", "", "y"]
    balanced(report)


def test_lone_surrogates_are_replaced_and_the_row_kept(tmp_path):
    table, report = preprocess_train(
        train_csv(tmp_path, row(a='["bad \\ud83d end", "pair \\ud83d\\ude00"]')), n_folds=2, seed=0
    )
    assert table.filter(pl.col("id") == 99)["response_a"].to_list() == [["bad \ufffd end", "pair \U0001f600"]]
    balanced(report)


def test_extra_columns_are_ignored_and_listed(tmp_path):
    rows = [r + ["extra"] for r in good_rows()]
    path = write_csv(tmp_path / "train.csv", [*TRAIN_COLUMNS, "notes"], rows)
    table, report = preprocess_train(path, n_folds=2, seed=0)
    assert report.ignored_columns == ["notes"] and "notes" not in table.columns
    balanced(report)


def test_missing_column_header_only_and_empty_file(tmp_path):
    path = write_csv(tmp_path / "train.csv", [c for c in TRAIN_COLUMNS if c != "winner_tie"], [])
    with pytest.raises(DataError, match=r"train.csv: missing column\(s\) \['winner_tie'\]"):
        preprocess_train(path, n_folds=2, seed=0)
    path = write_csv(tmp_path / "train.csv", list(TRAIN_COLUMNS), [])
    with pytest.raises(DataError, match="train.csv: has a header but no rows"):
        preprocess_train(path, n_folds=2, seed=0)
    path.write_text("  \n")
    with pytest.raises(DataError, match="train.csv: file is empty"):
        preprocess_train(path, n_folds=2, seed=0)


def test_non_utf8_bytes_are_located(tmp_path):
    path = train_csv(tmp_path)
    path.write_bytes(path.read_bytes() + b'99,m1,m2,"[""caf\xe9""]","[""a""]","[""b""]",1,0,0\n')
    with pytest.raises(DataError, match=r"train.csv: not UTF-8: byte 0xe9 at line 10"):
        preprocess_train(path, n_folds=2, seed=0)


def test_a_five_megabyte_answer_and_two_hundred_turns_fit_the_budget(tmp_path, tiny_tokenizer):
    from arenapref.text import SEGMENTS, InputBuilder, encode_conversations

    huge = "word " * 1_000_000  # 5 MB of text in one turn
    turns = [f"turn {i}" for i in range(200)]
    bad = row(prompt=json.dumps(turns), a=json.dumps([huge]), b='["short answer"]')
    table, report = preprocess_train(train_csv(tmp_path, bad), n_folds=2, seed=0)
    kept = table.filter(pl.col("id") == 99)
    assert kept["response_a_chars"].item() == len(huge) and kept["n_turns"].item() == 200
    balanced(report)
    builder = InputBuilder.from_tokenizer(tiny_tokenizer, max_length=128)
    [ids] = encode_conversations(tiny_tokenizer, {c: kept[c].to_list() for c in SEGMENTS}, builder)
    assert len(ids) <= 128
    text = tiny_tokenizer.decode(ids)
    assert "short answer" in text and "turn 199" in text  # B survives; the last prompt turn is kept


def test_test_ids_missing_from_sample_submission_are_an_error(tmp_path):
    preds = tmp_path / "fold0.parquet"
    pl.DataFrame(
        {"id": [1, 2, 3], "winner_model_a": [0.2] * 3, "winner_model_b": [0.3] * 3, "winner_tie": [0.5] * 3}
    ).write_parquet(preds)
    sample = write_csv(
        tmp_path / "sample_submission.csv",
        ["id", "winner_model_a", "winner_model_b", "winner_tie"],
        [[1, 0.33, 0.33, 0.34], [2, 0.33, 0.33, 0.34]],
    )
    with pytest.raises(SubmissionError, match=r"1 test.csv ids are not in .*sample_submission.csv, e.g. \[3\]"):
        build_submission([preds], sample)


def test_test_rows_with_empty_text_are_kept_for_the_submission(tmp_path):
    path = write_csv(
        tmp_path / "test.csv",
        ["id", "prompt", "response_a", "response_b"],
        [[1, '["q"]', "", '["b"]'], [2, "[null]", '["a"]', "[]"]],
    )
    table, report = preprocess_test(path)
    assert table["id"].to_list() == [1, 2] and report.rows_kept == report.rows_in == 2
    assert np.array_equal(table["response_a_chars"].to_numpy(), [0, 1])
