"""Reading the competition's CSV files safely.

Every text field is a JSON list with one item per conversation turn. It is parsed with
`json.loads` only: data is never evaluated as code. Problems are reported with the file,
the row id and the field, so a user can find the offending line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.errors import DataError

TEXT_COLUMNS = ("prompt", "response_a", "response_b")
TRAIN_COLUMNS = ("id", "model_a", "model_b", *TEXT_COLUMNS, *LABEL_COLUMNS)
TEST_COLUMNS = ("id", *TEXT_COLUMNS)
SUBMISSION_COLUMNS = ("id", *LABEL_COLUMNS)


def clean_text(text: str) -> str:
    """Replace lone UTF-16 surrogates (valid in JSON, invalid in UTF-8) with U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def parse_turns(raw: str | None, *, file: str | Path, row: object, field: str) -> list[str] | None:
    """Parse one JSON-list field into a list of turn texts.

    Returns None for a missing (empty) CSV cell so the caller can count it; `null` items become
    empty strings. Anything that is not a JSON list of strings/nulls is an error.
    """
    if raw is None or raw.strip() == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DataError(file, f"not valid JSON ({err.msg} at char {err.pos}): {raw[:80]!r}", row, field) from None
    if not isinstance(value, list):
        raise DataError(file, f"expected a JSON list of strings, got {type(value).__name__}", row, field)
    turns = []
    for position, item in enumerate(value):
        if item is None:
            turns.append("")
        elif isinstance(item, str):
            turns.append(clean_text(item))
        else:
            raise DataError(file, f"item {position} is {type(item).__name__}, expected a string or null", row, field)
    return turns


def _utf8_error(path: Path) -> DataError | None:
    """The first byte that is not UTF-8, with its line, or None when the file decodes."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return DataError(path, f"not UTF-8: byte {raw[err.start]:#04x} at line {line} (offset {err.start})")
    return None


def read_csv_strict(path: str | Path, expected: tuple[str, ...]) -> tuple[pl.DataFrame, list[str]]:
    """Read a CSV with every column as text; check encoding and columns.

    Returns the frame restricted to the expected columns and the list of extra columns ignored.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if not head.strip() and path.stat().st_size <= len(head):
        raise DataError(path, "file is empty (expected a header and rows)")
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        # polars checks UTF-8 itself; the slow scan only runs to say where the bad byte is.
        raise (_utf8_error(path) or DataError(path, f"cannot be read as CSV: {err}")) from None
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; expected {list(expected)}, found {frame.columns}")
    extra = [c for c in frame.columns if c not in expected]
    if frame.height == 0:
        raise DataError(path, "has a header but no rows")
    return frame.select(expected), extra


# The strict grammar of a cell that polars may decode in bulk: a JSON list whose items are strings
# or null. Only used to locate the bad cells once a bulk decode has failed.
_JSON_SPACE = r"[ \t\n\r]*"
_JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"'
_JSON_ITEM = rf"(?:{_JSON_STRING}|null)"
_NEXT_ITEM = rf"(?:,{_JSON_SPACE}{_JSON_ITEM}{_JSON_SPACE})"
LIST_OF_STRINGS = rf"^{_JSON_SPACE}\[{_JSON_SPACE}(?:{_JSON_ITEM}{_JSON_SPACE}{_NEXT_ITEM}*)?\]{_JSON_SPACE}$"
STARTS_AS_LIST = rf"^{_JSON_SPACE}\["
# An escaped UTF-16 surrogate: the cell may hold a lone one, which polars decodes to NUL (high) or
# rejects (low); parse_turns replaces it instead.
SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F]"
TURNS = pl.List(pl.String)


def parse_text_columns(
    frame: pl.DataFrame, columns: Sequence[str], ids: list[int], file: str | Path
) -> dict[str, pl.Series]:
    """Parse JSON-list columns into lists of turn texts; null where a cell is missing.

    Same result as parse_turns on every cell. Polars decodes the cells in bulk; the cells it may
    get wrong (not starting as a list, escaped surrogates, items that were not strings) and the
    cells it cannot decode go through parse_turns one by one, which handles them or names the problem.
    """
    flags = frame.select(
        *(pl.col(c).str.contains(STARTS_AS_LIST).fill_null(False).alias(f"{c}:list") for c in columns),
        *(pl.col(c).str.contains(SURROGATE_ESCAPE).fill_null(False).alias(f"{c}:surrogate") for c in columns),
    )
    candidate = {c: flags[f"{c}:list"] & ~flags[f"{c}:surrogate"] for c in columns}

    def decode(pick: dict[str, pl.Series] | None) -> pl.DataFrame:
        return frame.select(
            (pl.col(c) if pick is None else pl.when(pl.lit(pick[c])).then(pl.col(c)).otherwise(None))
            .str.json_decode(TURNS)
            .alias(c)
            for c in columns
        )

    try:  # the usual case: every cell strict JSON, decoded whole (masking the column costs a copy)
        decoded = decode(None)
    except pl.exceptions.PolarsError:
        try:  # a lone surrogate polars rejects: leave the surrogate cells to parse_turns
            decoded = decode(candidate)
        except pl.exceptions.PolarsError:  # some cell is not a list of strings: find it with the grammar
            strict = frame.select(pl.col(c).str.contains(LIST_OF_STRINGS).fill_null(False) for c in columns)
            candidate = {c: candidate[c] & strict[c] for c in columns}
            decoded = decode(candidate)

    # Polars turns number and boolean items into text. A cell whose items are all strings or null has
    # two quotes per string item plus one per escaped quote inside them; a cell with any other item
    # (or a quote written as \u0022) has fewer, and takes the slow path.
    quotes = pl.element().str.count_matches('"', literal=True)
    checks = pl.concat([frame.select(pl.col(c).alias(f"{c}:raw") for c in columns), decoded], how="horizontal")
    checked = checks.select(
        *(
            (
                pl.col(f"{c}:raw").str.count_matches('"', literal=True) - pl.col(c).list.eval(quotes).list.sum()
                == 2 * (pl.col(c).list.len() - pl.col(c).list.eval(pl.element().is_null()).list.sum())
            )
            .fill_null(False)
            .alias(f"{c}:exact")
            for c in columns
        ),
        *(pl.col(c).list.eval(pl.element().fill_null("")).cast(TURNS) for c in columns),
    )
    parsed = {}
    for column in columns:
        bulk = (candidate[column] & checked[f"{column}:exact"]).to_numpy()
        series = checked[column]
        slow = np.flatnonzero(~bulk & frame[column].is_not_null().to_numpy())
        if len(slow):
            values = frame[column].gather(slow).to_list()
            # Position 0 is a null; slow row k takes the k-th parsed value, every other row the null.
            cells = [parse_turns(v, file=file, row=ids[i], field=column) for v, i in zip(values, slow, strict=True)]
            patch = pl.Series([None, *cells], dtype=TURNS)
            pick = np.zeros(frame.height, dtype=np.int64)
            pick[slow] = np.arange(1, len(slow) + 1)
            series = pl.select(pl.when(pl.lit(pl.Series(bulk))).then(series).otherwise(patch.gather(pick))).to_series()
        parsed[column] = series.alias(column)
    return parsed


def parse_ids(frame: pl.DataFrame, file: str | Path) -> list[int]:
    """Ids must be unique integers."""
    raw = frame["id"]
    ids = raw.str.strip_chars().cast(pl.Int64, strict=False)
    bad = ids.is_null()
    if bad.any():
        index = int(bad.arg_true()[0])
        value = raw[index]
        raise DataError(file, f"id {value!r} on line {index + 2} is not an integer", value, "id")
    repeated = ~ids.is_first_distinct()
    if repeated.any():
        raise DataError(file, "duplicate id", int(ids.filter(repeated)[0]), "id")
    return ids.to_list()


def parse_labels(frame: pl.DataFrame, ids: list[int], file: str | Path) -> list[int]:
    """One-hot winner columns to a class index: 0 = A wins, 1 = B wins, 2 = tie."""
    for name in LABEL_COLUMNS:
        bad = ~frame[name].is_in(["0", "1"]).fill_null(False)
        if bad.any():
            index = int(bad.arg_true()[0])
            raise DataError(file, f"label must be 0 or 1, got {frame[name][index]!r}", ids[index], name)
    values = frame.select(pl.col(c).cast(pl.Int8) for c in LABEL_COLUMNS).to_numpy()
    not_one_hot = values.sum(axis=1) != 1
    if not_one_hot.any():
        index = int(np.flatnonzero(not_one_hot)[0])
        found = dict(zip(LABEL_COLUMNS, values[index].tolist(), strict=True))
        raise DataError(file, f"labels are not one-hot: {found}", ids[index], "winner_*")
    return values.argmax(axis=1).tolist()
