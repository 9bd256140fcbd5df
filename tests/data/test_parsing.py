import json

import polars as pl
import pytest
from conftest import write_csv

from arenapref.data.parsing import TEXT_COLUMNS, TRAIN_COLUMNS, parse_text_columns, read_csv_strict
from arenapref.data.preprocess import preprocess_test, preprocess_train
from arenapref.data.turns import parse_turns
from arenapref.errors import DataError


def parse(raw):
    return parse_turns(raw, file="train.csv", row=7, field="prompt")


def test_null_items_become_empty_text():
    assert parse('["hi", null, "there"]') == ["hi", "", "there"]
    assert parse("[null]") == [""]


def test_empty_list_and_missing_cell():
    assert parse("[]") == []
    assert parse("") is None
    assert parse(None) is None


def test_lone_surrogate_is_replaced_and_pairs_are_kept():
    lone = parse('["bad \\ud83d end"]')[0]
    assert lone == "bad \ufffd end"
    lone.encode("utf-8")  # must be encodable now
    assert parse('["smile \\ud83d\\ude00"]') == ["smile \U0001f600"]


def test_escaped_quotes_backslashes_and_newlines():
    text = 'He said "hi" \\ then\nleft'
    assert parse(json.dumps([text])) == [text]


def test_python_code_in_data_stays_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "__import__('os').system('touch PWNED')"
    assert parse(json.dumps([code])) == [code]
    # A Python literal that only eval would accept is rejected, not evaluated.
    with pytest.raises(DataError):
        parse(f"[{code}]")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "raw, message",
    [('{"a": 1}', "expected a JSON list"), ("[1, 2]", "item 0 is int"), ("['single']", "not valid JSON")],
)
def test_bad_fields_name_file_row_and_field(raw, message):
    with pytest.raises(DataError) as err:
        parse(raw)
    text = str(err.value)
    assert "train.csv" in text and "row id=7" in text and "field 'prompt'" in text and message in text


def train_row(row_id, prompt='["q"]', a='["a"]', b='["b"]', label=(1, 0, 0)):
    return [row_id, "m1", "m2", prompt, a, b, *label]


def test_preprocess_counts_every_dropped_row(tmp_path):
    rows = [train_row(i, prompt=json.dumps([f"question {i}"])) for i in range(1, 11)]
    rows.append(train_row(11, prompt=json.dumps(["question 1"])))  # same conversation and label as id 1
    rows.append(train_row(12, a="[]"))
    rows.append(train_row(13, b="[null]"))
    rows.append(train_row(14, prompt='[""]'))
    rows.append(train_row(15, a=""))
    path = write_csv(tmp_path / "train.csv", list(TRAIN_COLUMNS), rows)
    table, report = preprocess_train(path, n_folds=2, seed=0)
    assert report.rows_in == 15
    assert dict(report.dropped) == {
        "duplicate": 1,
        "empty_response_a": 1,
        "empty_response_b": 1,
        "empty_prompt": 1,
        "missing_response_a": 1,
    }
    assert report.rows_kept == table.height == 10
    assert report.rows_kept + sum(report.dropped.values()) == report.rows_in
    assert sorted(table["id"].to_list()) == list(range(1, 11))


def test_labels_must_be_one_hot(tmp_path):
    path = write_csv(tmp_path / "train.csv", list(TRAIN_COLUMNS), [train_row(5, label=(1, 1, 0))])
    with pytest.raises(DataError, match=r"train.csv, row id=5, field 'winner_\*': labels are not one-hot"):
        preprocess_train(path, n_folds=2, seed=0)


def test_duplicate_ids_and_missing_columns_are_errors(tmp_path):
    path = write_csv(tmp_path / "train.csv", list(TRAIN_COLUMNS), [train_row(5), train_row(5)])
    with pytest.raises(DataError, match="row id=5, field 'id': duplicate id"):
        preprocess_train(path, n_folds=2, seed=0)
    path = write_csv(tmp_path / "test.csv", ["id", "prompt", "response_a"], [[1, '["q"]', '["a"]']])
    with pytest.raises(DataError, match=r"missing column\(s\) \['response_b'\]"):
        preprocess_test(path)


def test_non_utf8_and_empty_files(tmp_path):
    bad = tmp_path / "test.csv"
    bad.write_bytes(b'id,prompt,response_a,response_b\n1,"[\\"caf\xe9\\"]","[\\"a\\"]","[\\"b\\"]"\n')
    with pytest.raises(DataError, match="not UTF-8: byte 0xe9 at line 2"):
        read_csv_strict(bad, ("id", "prompt", "response_a", "response_b"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="file is empty"):
        preprocess_test(empty)


def test_test_rows_are_never_dropped(tmp_path):
    path = write_csv(
        tmp_path / "test.csv",
        ["id", "prompt", "response_a", "response_b"],
        [[1, '["q"]', "[]", '["b"]'], [2, '["q"]', '["a"]', "[null]"]],
    )
    table, report = preprocess_test(path)
    assert table["id"].to_list() == [1, 2]
    assert report.rows_kept == report.rows_in == 2


# Cells the bulk decoder could get wrong: surrounding space, escaped quotes and backslashes, surrogate
# pairs and lone surrogates of either kind, a quote written as \u0022, a literal backslash before "ud83d",
# an escaped NUL (polars' decoding of a lone high surrogate).
VALID_CELLS = [
    '["a", null, ""]',
    "[]",
    '  [ "lead" , null ]  ',
    '["say \\"hi\\" \\\\ now"]',
    '["\\u0022quoted"]',
    '["pair \\ud83d\\ude00"]',
    '["lone high \\ud83d end"]',
    '["lone low \\udc00 end"]',
    '["not an escape \\\\ud83d"]',
    '["escaped nul \\u0000 kept", "high then letter \\ud83d\\u0041", "high at the end \\uD83D"]',
    '["tab\\tnew\\nline"]',
    None,
    "   ",
]
# Cells polars would decode by turning items into text, or that are not lists at all.
COERCIBLE_CELLS = {
    '[1, "a"]': "item 0 is int",
    '["a", true]': "item 1 is bool",
    '"bare"': "got str",
    "5": "got int",
    "[1.5e3]": "item 0 is float",
    "{}": "got dict",
    '[["a"]]': "item 0 is list",
}


@pytest.mark.parametrize("range_rows", [None, 4])
def test_bulk_parsing_matches_the_cell_parser(range_rows):
    frame = pl.DataFrame({"prompt": VALID_CELLS * 3})
    ids = list(range(100, 100 + frame.height))
    parsed = parse_text_columns(frame, ["prompt"], ids, "train.csv", range_rows)["prompt"].to_list()
    assert parsed == [parse_turns(cell, file="train.csv", row=0, field="prompt") for cell in VALID_CELLS * 3]
    assert parsed[7] == ["lone low \ufffd end"] and parsed[8] == ["not an escape \\ud83d"]


def test_lone_high_surrogates_in_a_column_polars_decodes_are_replaced():
    # No lone low surrogate here, so polars decodes the whole column (a lone high one to NUL).
    cells = ['["pair \\ud83d\\ude00"]', '["lone high \\ud83d end"]', '["escaped nul \\u0000 kept"]', '["plain"]']
    parsed = parse_text_columns(pl.DataFrame({"prompt": cells}), ["prompt"], [1, 2, 3, 4], "train.csv")["prompt"]
    assert parsed.to_list() == [["pair \U0001f600"], ["lone high \ufffd end"], ["escaped nul \x00 kept"], ["plain"]]


@pytest.mark.parametrize("cell", sorted(COERCIBLE_CELLS))
def test_bulk_parsing_rejects_what_the_cell_parser_rejects(cell):
    frame = pl.DataFrame({"prompt": [*VALID_CELLS, cell, '["after"]']})
    ids = list(range(1, frame.height + 1))
    with pytest.raises(DataError) as err:
        parse_text_columns(frame, ["prompt"], ids, "train.csv")
    assert f"row id={len(VALID_CELLS) + 1}" in str(err.value) and COERCIBLE_CELLS[cell] in str(err.value)


def test_no_rows_parse_to_empty_turn_columns():
    frame = pl.DataFrame({"prompt": pl.Series([], dtype=pl.String)})
    parsed = parse_text_columns(frame, ["prompt"], [], "train.csv")["prompt"]
    assert parsed.len() == 0 and parsed.dtype == pl.List(pl.String)


def test_the_first_bad_cell_is_reported_when_ranges_are_decoded_at_once():
    cells = ['["ok"]'] * 40
    cells[12], cells[33] = "[1]", "{}"  # in the second and the last of four ranges
    frame = pl.DataFrame({"response_a": cells})
    with pytest.raises(DataError, match=r"row id=13, field 'response_a'.*item 0 is int"):
        parse_text_columns(frame, ["response_a"], list(range(1, 41)), "train.csv", range_rows=10)


def test_line_numbers_follow_cells_that_span_lines_and_blank_lines(tmp_path):
    path = tmp_path / "test.csv"
    lines = [
        "id,prompt,response_a,response_b",
        '1,"[""first"",',  # a quoted cell over two lines: JSON allows a newline between items
        '""second""]","[""a""]","[""b""]"',
        "",
        '2,"[""q""]","[""a""]","[""b""]"',
        'x,"[""q""]","[""a""]","[""b""]"',
    ]
    path.write_text("\n".join(lines) + "\n")
    csv = read_csv_strict(path, ("id", "prompt", "response_a", "response_b"))
    assert csv.blank_lines == [4] and csv.frame.height == 3
    assert [csv.line(i) for i in range(3)] == [2, 5, 6]
    with pytest.raises(DataError, match=r"test.csv, line 6, field 'id': id 'x' is not an integer$"):
        preprocess_test(path)


def test_bulk_parsing_matches_the_cell_parser_on_real_rows(real_data):
    # Real rows hold surrogate pairs, null turns and escapes of every kind; ranges of 100 rows put
    # some ranges with and some without each.
    frame = read_csv_strict(real_data / "train.csv", TRAIN_COLUMNS).frame
    cells = {column: frame[column].to_list() for column in TEXT_COLUMNS}
    parsed = parse_text_columns(frame, TEXT_COLUMNS, list(range(len(frame))), "train.csv", range_rows=100)
    for column in TEXT_COLUMNS:
        expected = [parse_turns(cell, file="train.csv", row=0, field=column) for cell in cells[column]]
        assert parsed[column].to_list() == expected
