"""Reading the competition's CSV files safely.

Every text field is a JSON list with one item per conversation turn. It is parsed with
`json.loads` only: data is never evaluated as code. Problems are reported with the file,
the row id and the field, so a user can find the offending line.
"""

from __future__ import annotations

import json
from pathlib import Path

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
            raise DataError(
                file, f"item {position} is {type(item).__name__}, expected a string or null", row, field
            )
    return turns


def read_csv_strict(path: str | Path, expected: tuple[str, ...]) -> tuple[pl.DataFrame, list[str]]:
    """Read a CSV with every column as text; check encoding and columns.

    Returns the frame restricted to the expected columns and the list of extra columns ignored.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(path, f"not UTF-8: byte {raw[err.start]:#04x} at line {line} (offset {err.start})") from None
    if not raw.strip():
        raise DataError(path, "file is empty (expected a header and rows)")
    try:
        frame = pl.read_csv(raw, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise DataError(path, f"cannot be read as CSV: {err}") from None
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; expected {list(expected)}, found {frame.columns}")
    extra = [c for c in frame.columns if c not in expected]
    if frame.height == 0:
        raise DataError(path, "has a header but no rows")
    return frame.select(expected), extra


def parse_ids(frame: pl.DataFrame, file: str | Path) -> list[int]:
    """Ids must be unique integers."""
    ids: list[int] = []
    seen: set[int] = set()
    for line, raw in enumerate(frame["id"].to_list(), start=2):
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise DataError(file, f"id {raw!r} on line {line} is not an integer", raw, "id") from None
        if value in seen:
            raise DataError(file, "duplicate id", value, "id")
        seen.add(value)
        ids.append(value)
    return ids


def parse_labels(frame: pl.DataFrame, ids: list[int], file: str | Path) -> list[int]:
    """One-hot winner columns to a class index: 0 = A wins, 1 = B wins, 2 = tie."""
    columns = [frame[c].to_list() for c in LABEL_COLUMNS]
    labels = []
    for index, row_id in enumerate(ids):
        values = []
        for name, column in zip(LABEL_COLUMNS, columns):
            raw = column[index]
            if raw not in ("0", "1"):
                raise DataError(file, f"label must be 0 or 1, got {raw!r}", row_id, name)
            values.append(int(raw))
        if sum(values) != 1:
            raise DataError(file, f"labels are not one-hot: {dict(zip(LABEL_COLUMNS, values))}", row_id, "winner_*")
        labels.append(values.index(1))
    return labels
