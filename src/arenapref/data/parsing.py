"""Reading the competition's CSV files safely.

Every text field is a JSON list with one item per conversation turn. It is parsed with
`json.loads` only: data is never evaluated as code. Problems are reported with the file,
the row id and the field, so a user can find the offending line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.data.turns import parse_turns
from arenapref.errors import DataError

TEXT_COLUMNS = ("prompt", "response_a", "response_b")
TRAIN_COLUMNS = ("id", "model_a", "model_b", *TEXT_COLUMNS, *LABEL_COLUMNS)
TEST_COLUMNS = ("id", *TEXT_COLUMNS)
SUBMISSION_COLUMNS = ("id", *LABEL_COLUMNS)
NO_LABEL = -1  # the label index of a row known only by a teacher's probabilities (a pseudo-labelled pair)


def _utf8_error(path: Path) -> DataError | None:
    """The first byte that is not UTF-8, with its line, or None when the file decodes."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return DataError(path, f"not UTF-8: byte {raw[err.start]:#04x} at line {line} (offset {err.start})")
    return None


@dataclass
class CsvFile:
    """A CSV file read with every column as text: the expected columns, blank lines left out."""

    path: Path
    frame: pl.DataFrame  # the expected columns, one row per record that is not a blank line
    extra: list[str]  # columns present but not expected (ignored)
    blank_lines: list[int]  # line numbers of the blank lines left out
    starts: list[int] | None = None  # line where each row of `frame` starts, once the file has been scanned

    def line(self, index: int) -> int:
        """The line of the file where row `index` of the frame starts (a quoted cell may span lines)."""
        if self.starts is None:
            layout = scan_csv(self.path, strict=False)
            self.starts = [start for start, blank in zip(layout.starts, layout.blank, strict=True) if not blank]
        return self.starts[index]


@dataclass
class CsvLayout:
    """Where each record after the header starts, and which records are blank lines."""

    starts: list[int]
    blank: list[bool]


# RFC 4180 cells, matched without backtracking (possessive) so a quote left open costs one pass.
_QUOTED_CELL = re.compile(r'"(?:[^"]++|"")*+"')
_PLAIN_CELL = re.compile(r'(?:[^,"\r\n]++|\r(?!\n))*+')
_PLAIN_CELL_WITH_QUOTES = re.compile(r"(?:[^,\r\n]++|\r(?!\n))*+")  # a quote after its start taken as text
_BLANK_LINE = re.compile(r"[ \t]*+(?:\r?\n|\Z)")


def _excerpt(text: str, pos: int, before: int = 0) -> str:
    """Up to 40 characters of the line at `pos`, starting up to `before` ahead of it, as a literal:
    enough to find the spot in an editor, never a whole row."""
    start = max(text.rfind("\n", 0, pos) + 1, pos - before)
    end = text.find("\n", start, start + 40)
    return repr(text[start : start + 40 if end < 0 else end].removesuffix("\r"))


def scan_csv(path: str | Path, strict: bool = True) -> CsvLayout:
    """Walk the file's records the way a strict CSV reader does, counting lines, to name the line of a
    structure problem: a quote left open, a quote inside an unquoted cell, text after a closing quote,
    a record with more or fewer cells than the header. polars reports these without a line number
    (or, for a short record, not at all), so this pass runs when polars fails or a row looks short.
    With strict False a quote inside an unquoted cell is text, as polars read it when it did not fail."""
    plain = _PLAIN_CELL if strict else _PLAIN_CELL_WITH_QUOTES
    path = Path(path)
    text = path.read_bytes().decode("utf-8")  # not read_text: it would turn \r\n into \n
    header: list[str] | None = None
    layout = CsvLayout([], [])
    pos, line = 0, 1
    while pos < len(text):
        record_start, record_line = pos, line
        blank = _BLANK_LINE.match(text, pos)
        if blank:
            # polars skips empty lines ahead of the header but takes a line of spaces for it; later
            # blank lines it reads as rows (of nulls).
            if header is None and blank.group().strip("\r\n"):
                raise DataError(
                    path, "a line of spaces before the header (the first line must name the columns)", line=line
                )
            if header is not None:
                layout.starts.append(record_line)
                layout.blank.append(True)
            pos, line = blank.end(), line + 1
            continue
        cells: list[str] = []  # every cell of the header; of a row, only the first (its id, for messages)
        count = 0
        while True:
            field = header[count] if header is not None and count < len(header) else None
            row = cells[0] if header is not None and cells and len(cells[0]) <= 20 else None
            cell_start, cell_line = pos, line
            quoted = text.startswith('"', pos)
            match = (_QUOTED_CELL if quoted else plain).match(text, pos)
            if match is None:
                problem = "a quoted cell is never closed (it runs to the end of the file)"
                raise DataError(path, f"{problem}: {_excerpt(text, pos)}", row, field, line)
            line += text.count("\n", pos, match.end())
            if header is None or count == 0:
                cells.append(match.group()[1:-1].replace('""', '"') if quoted else match.group())
            count += 1
            pos = match.end()
            if pos == len(text):
                break
            if text.startswith(("\n", "\r\n"), pos):
                pos, line = text.index("\n", pos) + 1, line + 1
                break
            if text[pos] == ",":
                pos += 1
                continue
            near = _excerpt(text, pos, 20)
            if not quoted:
                problem = "a quote inside an unquoted cell (quote the whole cell, doubling the quotes in it)"
            elif line > cell_line:
                # The quote that closed this cell is on a later line: most likely the cell's closing quote is
                # missing and the next row's first quote was taken for it.
                problem = f"a quoted cell is not closed on its line (the next quote is on line {line})"
                line, near = cell_line, _excerpt(text, cell_start)
            else:
                problem = "text after a closing quote (a quote inside a quoted cell must be doubled)"
            raise DataError(path, f"{problem}: {near}", row, field, line)
        if header is None:
            header = cells
        elif count != len(header):
            row = cells[0] if len(cells[0]) <= 20 else None
            excerpt = _excerpt(text, record_start)
            raise DataError(path, f"{count} cells where the header has {len(header)}: {excerpt}", row, line=record_line)
        else:
            layout.starts.append(record_line)
            layout.blank.append(False)
    return layout


def _structure_error(path: Path) -> DataError | None:
    try:
        scan_csv(path)
    except DataError as err:
        return err
    return None


def read_csv_strict(path: str | Path, expected: tuple[str, ...]) -> CsvFile:
    """Read a CSV with every column as text; check encoding, structure and columns.

    Blank lines (which polars reads as rows of nulls) are left out of the frame and listed, so the
    caller can count them; a structure problem is an error naming its line.
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
        # polars checks UTF-8 itself; the slow scans only run to say where the bad byte or quote is.
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise (
            _utf8_error(path) or _structure_error(path) or DataError(path, f"cannot be read as CSV: {reason}")
        ) from None
    duplicated = _duplicated_header_names(path)
    if duplicated:
        name, count = duplicated
        raise DataError(
            path, f"the header names this column {count} times; each column must appear once", field=name, line=1
        )
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; expected {list(expected)}, found {frame.columns}")
    extra = [c for c in frame.columns if c not in expected]
    csv = CsvFile(path, frame.select(expected), extra, [])
    # polars pads a short record with nulls and reads a blank line as a row of nulls (or of one blank
    # cell): only then is the last column null, and only then is the file scanned for its lines.
    if frame[frame.columns[-1]].is_null().any():
        layout = scan_csv(path, strict=False)
        if len(layout.starts) != frame.height:
            found = f"polars read {frame.height} rows, a line-by-line scan {len(layout.starts)}"
            raise DataError(path, f"cannot be read as CSV: {found}; check the quoting")
        keep = pl.Series([not blank for blank in layout.blank])
        csv.frame = csv.frame.filter(keep)
        csv.blank_lines = [start for start, blank in zip(layout.starts, layout.blank, strict=True) if blank]
        csv.starts = [start for start, blank in zip(layout.starts, layout.blank, strict=True) if not blank]
    if csv.frame.height == 0:
        raise DataError(path, "has a header but no rows")
    return csv


def _duplicated_header_names(path: Path) -> tuple[str, int] | None:
    """The first column name the header repeats, and how often it appears (polars would rename the
    later copies to `<name>_duplicated_<k>` and read on, so that which one holds the data is a guess)."""
    import csv
    from collections import Counter

    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        header = next(csv.reader(handle), [])
    counts = Counter(header)
    repeated = [name for name in header if counts[name] > 1]
    return (repeated[0], counts[repeated[0]]) if repeated else None


# The strict grammar of a cell that polars may decode in bulk: a JSON list whose items are strings
# or null. Only used to locate the bad cells once a bulk decode has failed.
_JSON_SPACE = r"[ \t\n\r]*"
_JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"'
_JSON_ITEM = rf"(?:{_JSON_STRING}|null)"
_NEXT_ITEM = rf"(?:,{_JSON_SPACE}{_JSON_ITEM}{_JSON_SPACE})"
LIST_OF_STRINGS = rf"^{_JSON_SPACE}\[{_JSON_SPACE}(?:{_JSON_ITEM}{_JSON_SPACE}{_NEXT_ITEM}*)?\]{_JSON_SPACE}$"
STARTS_AS_LIST = rf"^{_JSON_SPACE}\["
# An escaped UTF-16 surrogate: the cell may hold a lone one, which polars decodes to NUL (high) or
# rejects (low); parse_turns replaces it instead. Only searched for once a bulk decode has failed.
SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F]"
TURNS = pl.List(pl.String)
RANGE_ROWS = 8_000  # rows decoded as one piece: few enough to copy little, enough to cost little overhead


def parse_text_columns(
    frame: pl.DataFrame, columns: Sequence[str], ids: list[int], file: str | Path, range_rows: int | None = None
) -> dict[str, pl.Series]:
    """Parse JSON-list columns into lists of turn texts; null where a cell is missing.

    The columns are taken out of `frame` (it keeps the others): one column's raw text is freed as
    soon as it is decoded, so the raw and decoded forms of all three are never held at once (peak
    memory stays under the pandas baseline's at the competition's size). A column is decoded in
    ranges of `range_rows` rows (default RANGE_ROWS), one per polars thread at a time: the ranges
    are views of the column, each range's decoded form is one chunk of the result, and what a
    range copies on its way (cells left to the slow path, null turns) is a range's worth, not a
    column's.
    """
    if frame.height == 0:
        return {column: frame.drop_in_place(column).cast(TURNS) for column in columns}
    range_rows = max(1, range_rows or RANGE_ROWS)
    bounds = [*range(0, frame.height, range_rows), frame.height]
    ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
    texts = {}
    with ThreadPoolExecutor(max(1, min(pl.thread_pool_size(), len(ranges)))) as pool:  # polars releases the GIL
        for column in columns:
            raw = frame.drop_in_place(column)
            pieces = [raw.slice(start, stop - start) for start, stop in ranges]
            del raw  # the pieces hold the column's text until they are decoded
            decoded = pool.map(parse_text_column, pieces, [ids[start:stop] for start, stop in ranges], repeat(file))
            del pieces
            # In row order: the first bad cell in the file is the one reported.
            texts[column] = pl.concat(list(decoded), rechunk=False)
    return texts


def parse_text_column(raw: pl.Series, ids: list[int], file: str | Path) -> pl.Series:
    """One column of JSON lists to lists of turn texts, the same as parse_turns on every cell.

    Polars decodes the cells in bulk; the cells it may get wrong (not starting as a list, lone
    surrogates, items that were not strings) and the cells it cannot decode go through parse_turns
    one by one, which handles them or names the problem.
    """
    column = raw.name
    starts_as_list = raw.str.contains(STARTS_AS_LIST).fill_null(False)

    def decode(pick: pl.Series) -> pl.Series:
        cells = pl.select(pl.when(pick).then(raw).otherwise(None)).to_series()  # masking costs a copy
        return cells.str.json_decode(TURNS)

    try:  # the usual case: every cell strict JSON, decoded whole
        decoded, candidate = raw.str.json_decode(TURNS), starts_as_list
    except pl.exceptions.PolarsError:
        candidate = starts_as_list & ~raw.str.contains(SURROGATE_ESCAPE).fill_null(False)
        try:  # a lone low surrogate, which polars rejects: leave the surrogate cells to parse_turns
            decoded = decode(candidate)
        except pl.exceptions.PolarsError:  # some cell is not a list of strings: find it with the grammar
            candidate = candidate & raw.str.contains(LIST_OF_STRINGS).fill_null(False)
            decoded = decode(candidate)

    # Polars turns number and boolean items into text. A cell whose items are all strings or null has
    # two quotes per string item plus one per escaped quote inside them; a cell with any other item
    # (or a quote written as \u0022) has fewer, and takes the slow path. Polars decodes a lone high
    # surrogate to NUL (a pair it decodes right): a NUL in a decoded turn is counted with the quotes,
    # so that cell (or one with an escaped NUL, which parse_turns keeps) takes the slow path too.
    quotes = pl.element().str.count_matches(r'["\x00]')
    null_items = decoded.list.eval(pl.element().is_null()).list.sum()
    exact = (
        raw.str.count_matches('"', literal=True) - decoded.list.eval(quotes).list.sum()
        == 2 * (decoded.list.len() - null_items)
    ).fill_null(False)
    bulk = (candidate & exact).to_numpy()
    slow = np.flatnonzero(~bulk & raw.is_not_null().to_numpy())
    # A null turn becomes empty text. Filling every cell would copy the column's text (polars' fill
    # copies string data); only the few cells with a null turn are filled and patched in.
    holes = np.flatnonzero(bulk & (null_items.fill_null(0) > 0).to_numpy())
    if len(slow) or len(holes):
        values = raw.gather(slow).to_list()
        cells = [parse_turns(v, file=file, row=ids[i], field=column) for v, i in zip(values, slow, strict=True)]
        filled = decoded.gather(holes).list.eval(pl.element().fill_null("")).cast(TURNS)
        # Position 0 is a null; a patched row takes its own value, every other row outside `keep` the null.
        patch = pl.concat([pl.Series([None, *cells], dtype=TURNS), filled])
        pick = np.zeros(len(raw), dtype=np.int64)
        pick[slow] = np.arange(1, len(slow) + 1)
        pick[holes] = np.arange(len(slow) + 1, len(slow) + 1 + len(holes))
        keep = bulk.copy()
        keep[holes] = False
        decoded = pl.select(pl.when(pl.lit(pl.Series(keep))).then(decoded).otherwise(patch.gather(pick))).to_series()
    return decoded.alias(column)


def parse_ids(frame: pl.DataFrame, file: str | Path, line: Callable[[int], int] | None = None) -> list[int]:
    """Ids must be unique integers. `line` gives a row's line in the file (CsvFile.line); without it,
    row i is taken to be on line i + 2 (after the header, no cell spanning lines)."""
    raw = frame["id"]
    ids = raw.str.strip_chars().cast(pl.Int64, strict=False)
    bad = ids.is_null()
    if bad.any():
        index = int(bad.arg_true()[0])
        value = raw[index]
        where = line(index) if line is not None else index + 2
        if value is None or not value.strip():
            raise DataError(file, "id is empty", None, "id", where)
        if re.fullmatch(r"[+-]?[0-9]+", value.strip()):
            raise DataError(file, f"id {value!r} is out of the 64-bit integer range", None, "id", where)
        raise DataError(file, f"id {value!r} is not an integer", None, "id", where)
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
