"""Bad input, case by case: a clear error naming file, row id and field, or a documented rule
with the row counted. Every case that reaches preprocessing checks rows_in = kept + dropped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from conftest import write_csv

from arenapref.data.parsing import TRAIN_COLUMNS
from arenapref.data.preprocess import preprocess_test, preprocess_train
from arenapref.errors import DataError, SubmissionError
from arenapref.evaluate.submission import build_submission

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


def test_a_column_named_twice_is_an_error_naming_it(tmp_path):
    """Two `id` columns: polars would rename the second and read on; which holds the ids is a guess."""
    header = [*TRAIN_COLUMNS, "id"]
    path = write_csv(tmp_path / "train.csv", header, [[*r, r[0]] for r in good_rows()])
    with pytest.raises(DataError) as err:
        preprocess_train(path, n_folds=2, seed=0)
    assert (
        str(err.value)
        == f"{path}, line 1, field 'id': the header names this column 2 times; each column must appear once"
    )
    test = write_csv(
        tmp_path / "test.csv", ["id", "prompt", "prompt", "response_a", "response_b"], [[1, "[]", "[]", "[]", "[]"]]
    )
    with pytest.raises(DataError, match="field 'prompt': the header names this column 2 times"):
        preprocess_test(test)


def test_non_utf8_bytes_are_located(tmp_path):
    path = train_csv(tmp_path)
    path.write_bytes(path.read_bytes() + b'99,m1,m2,"[""caf\xe9""]","[""a""]","[""b""]",1,0,0\n')
    with pytest.raises(DataError, match=r"train.csv: not UTF-8: byte 0xe9 at line 10"):
        preprocess_train(path, n_folds=2, seed=0)


def test_a_five_megabyte_answer_and_two_hundred_turns_fit_the_budget(tmp_path, tiny_tokenizer):
    from arenapref.data.text import SEGMENTS, InputBuilder, encode_conversations

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


# Cases a new user meets through the console command: one line on stderr naming the file, the line or
# row id and the field, exit code 2, no traceback.
TEST_HEADER = ["id", "prompt", "response_a", "response_b"]


def preprocess_command(tmp_path, train, test) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    return subprocess.run(
        [sys.executable, "-m", "arenapref.commands.preprocess", "--train", str(train), "--test", str(test)]
        + ["--n-folds", "2", "--out-train", str(out / "train.parquet"), "--out-test", str(out / "test.parquet")]
        + ["--report", str(out / "report.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def small_test_csv(tmp_path, rows=None):
    rows = rows or [[i, json.dumps([f"q{i}"]), '["a"]', '["b"]'] for i in (1, 2, 3)]
    return write_csv(tmp_path / "test.csv", TEST_HEADER, rows)


DEEP = "[" * 1000 + "]" * 1000  # json recurses once per bracket: past Python's limit of 1,000 frames


def test_a_cell_nested_a_thousand_levels_deep_names_file_row_and_field(tmp_path):
    train = train_csv(tmp_path, row(prompt=DEEP))
    line = one_line_error(preprocess_command(tmp_path, train, small_test_csv(tmp_path)))
    assert line == (
        f"error: {train}, row id=99, field 'prompt': nested too deeply (expected a flat JSON list of strings): "
        f"{DEEP[:40]!r}"
    )
    test = small_test_csv(
        tmp_path, [[1, '["q"]', '["a"]', '["b"]'], [2, '["q"]', '["a"]', "[" * 100_000 + "]" * 100_000]]
    )
    line = one_line_error(preprocess_command(tmp_path, train_csv(tmp_path), test))
    assert f"error: {test}, row id=2, field 'response_b': nested too deeply" in line


def blank_lines(path, at: list[int], text: str = "\r\n"):
    """Insert an empty line before each given (1-based, original) line; past the end: append it."""
    lines = path.read_bytes().decode().splitlines(keepends=True)
    for number in sorted(at, reverse=True):
        lines.insert(number - 1, text)
    path.write_text("".join(lines), newline="")
    return path


def test_blank_lines_are_dropped_and_counted_with_their_line_numbers(tmp_path):
    # An extra newline at the end (line 10), one mid-file (line 5) and a line of spaces (line 8).
    train = blank_lines(train_csv(tmp_path), [10, 5])
    blank_lines(train, [8], "   \r\n")
    table, report = preprocess_train(train, n_folds=2, seed=0)
    assert table.height == N_GOOD and report.rows_in == N_GOOD + 3
    assert dict(report.dropped) == {"blank_line": 3} and report.dropped_lines == {"blank_line": [5, 8, 12]}
    assert report.as_dict()["dropped_lines_sample"] == {"blank_line": [5, 8, 12]}
    report.check_balance()

    test = blank_lines(small_test_csv(tmp_path), [5, 5])  # two newlines after the last row
    table, report = preprocess_test(test)
    assert table["id"].to_list() == [1, 2, 3] and report.rows_kept == 3 and report.rows_in == 5
    assert report.dropped_lines == {"blank_line": [5, 6]}
    report.check_balance()

    done = preprocess_command(tmp_path, train, test)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["train"]["dropped"] == {"blank_line": 3} and written["test"]["dropped"] == {"blank_line": 2}
    assert "test: 3 rows, dropped {'blank_line': 2}" in done.stdout


def test_a_blank_line_among_rows_keeps_later_line_numbers_right(tmp_path):
    train = blank_lines(train_csv(tmp_path, row(row_id="x7")), [4])  # the bad id moves to line 11
    with pytest.raises(DataError, match=r"train.csv, line 11, field 'id': id 'x7' is not an integer$"):
        preprocess_train(train, n_folds=2, seed=0)


def raw_train(tmp_path, bad_line: str):
    """The good rows, then one raw line as written (no CSV quoting applied): line 10 of the file."""
    path = train_csv(tmp_path)
    path.write_text(path.read_bytes().decode() + bad_line, newline="")
    return path


GOOD_CELLS = '"[""a""]","[""b""]",1,0,0'
STRUCTURE = {
    "an unterminated quote": (
        '99,m1,m2,"[""q?""]",' + '"[""a""]","[""b""]",1,0,0\r\n100,m1,m2,"[""open\r\n',
        "line 11, row id=100, field 'prompt': a quoted cell is never closed (it runs to the end of the file): "
        '\'"[""open\'',
    ),
    "an unterminated quote followed by rows": (
        '99,m1,m2,"[""open\r\n' + f'100,m1,m2,"[""q?""]",{GOOD_CELLS}\r\n',
        "line 10, row id=99, field 'prompt': a quoted cell is not closed on its line (the next quote is on line 11)",
    ),
    "one cell too many": (
        f'99,m1,m2,"[""q?""]",{GOOD_CELLS},extra\r\n',
        "line 10, row id=99: 10 cells where the header has 9: '99,m1,m2,",
    ),
    "one cell too few": (
        f'99,m1,m2,"[""q?""]",{GOOD_CELLS[:-2]}\r\n',  # polars pads it with a null, silently
        "line 10, row id=99: 8 cells where the header has 9",
    ),
    "a stray quote in an unquoted cell": (
        f'99,m1,gpt"4,"[""q?""]",{GOOD_CELLS}\r\n',
        "line 10, row id=99, field 'model_b': a quote inside an unquoted cell",
    ),
    "text after a closing quote": (
        f'99,m1,m2,"[""q?""]"x,{GOOD_CELLS}\r\n',
        "line 10, row id=99, field 'prompt': text after a closing quote",
    ),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE))
def test_csv_structure_errors_name_the_line(tmp_path, case):
    bad_line, message = STRUCTURE[case]
    train = raw_train(tmp_path, bad_line)
    line = one_line_error(preprocess_command(tmp_path, train, small_test_csv(tmp_path)))
    assert line.startswith(f"error: {train}, {message}"), line
    assert len(line) < 300  # a short excerpt, not the reader's dump of raw rows


def test_wording_of_json_and_id_errors(tmp_path):
    with pytest.raises(DataError) as err:
        preprocess_train(train_csv(tmp_path, row(prompt='["open')), n_folds=2, seed=0)
    assert "(Unterminated string starting at char 1)" in str(err.value) and "at at" not in str(err.value)

    train = train_csv(tmp_path, row(row_id=2**64))
    line = one_line_error(preprocess_command(tmp_path, train, small_test_csv(tmp_path)))
    assert line == f"error: {train}, line 10, field 'id': id '{2**64}' is out of the 64-bit integer range"
    with pytest.raises(DataError, match=r"line 10, field 'id': id '-9223372036854775809' is out of the 64-bit"):
        preprocess_train(train_csv(tmp_path, row(row_id=-(2**63) - 1)), n_folds=2, seed=0)
    with pytest.raises(DataError, match=r"test.csv, line 3, field 'id': id is empty$"):
        preprocess_test(small_test_csv(tmp_path, [[1, '["q"]', '["a"]', '["b"]'], ["", '["q"]', '["a"]', '["b"]']]))


# A checkpoint folder that cannot work: each is one line before any tokenizer or weight is loaded.
def _checkpoint(tmp_path, source, keep=(), change=None):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for name in keep:
        shutil.copy2(source / name, folder / name)
    if change:
        change(folder)
    return folder


def _truncate(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _sharded(folder):
    index = {"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors"}}
    index["weight_map"]["b.weight"] = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")


WEIGHTS_AND_CONFIG = ("config.json", "model.safetensors")
CHECKPOINTS = {
    "missing folder": (None, None, "does not exist"),
    "empty folder": ((), None, "is an empty folder (expected config.json, *.safetensors weights and tokenizer files)"),
    "no config.json": (("model.safetensors", "tokenizer.json"), None, "has no config.json"),
    "no weights": (("config.json", "tokenizer.json"), None, "has no *.safetensors weights"),
    "only .bin weights": (
        ("config.json", "tokenizer.json"),
        lambda f: (f / "pytorch_model.bin").write_bytes(b"x"),
        "has PyTorch .bin weights only",
    ),
    "a truncated weights file": ((*WEIGHTS_AND_CONFIG, "tokenizer.json"), _truncate, "model.safetensors is cut short"),
    "a shard named in the index missing": (
        (*WEIGHTS_AND_CONFIG, "tokenizer.json"),
        _sharded,
        "1 of 2 weight files in model.safetensors.index.json are missing, e.g. model-00002-of-00002.safetensors",
    ),
    "no tokenizer files": (WEIGHTS_AND_CONFIG, None, "no tokenizer files in"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_unusable_checkpoints_are_one_line_before_anything_loads(tmp_path, tiny_checkpoint, monkeypatch, case):
    from arenapref.config import RunConfig
    from arenapref.errors import CheckpointError
    from arenapref.model import runtime

    keep, change, message = CHECKPOINTS[case]
    folder = tmp_path / "checkpoint" if keep is None else _checkpoint(tmp_path, tiny_checkpoint, keep, change)

    def never(*args, **kwargs):
        raise AssertionError("loaded before the checkpoint was checked")

    monkeypatch.setattr(runtime, "load_tokenizer", never)
    monkeypatch.setattr(runtime, "claim_device", never)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        runtime.Runtime.create(RunConfig.from_config({}), folder)

    data = tmp_path / "train.parquet"
    preprocess_train(train_csv(tmp_path), n_folds=2, seed=0)[0].write_parquet(data)
    done = subprocess.run(
        [sys.executable, "-m", "arenapref.commands.train_fold", "--data", str(data), "--fold", "0"]
        + ["--checkpoint", str(folder), "--adapter-dir", str(tmp_path / "adapter"), "--log", str(tmp_path / "log.json")]
        + ["--resume-dir", str(tmp_path / "resume")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = one_line_error(done)
    assert (
        line.startswith(f"error: model checkpoint {'not found: ' if keep is None else ''}{folder}") and message in line
    )
