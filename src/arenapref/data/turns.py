"""One JSON-list field of the competition's CSVs as a list of turn texts, with the standard library
only: parsing.py reads whole files with polars through it, and the GPU benchmark reads rows with it
on a machine that has no polars."""

from __future__ import annotations

import json
from pathlib import Path

from arenapref.errors import DataError


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
        # Some of json's messages end in "at" ("Unterminated string starting at"): say it once.
        where = f"{err.msg.removesuffix(' at')} at char {err.pos}"
        raise DataError(file, f"not valid JSON ({where}): {raw[:80]!r}", row, field) from None
    except RecursionError:
        # json recurses once per bracket; a cell of a thousand nested lists would otherwise end the run
        # with a traceback naming no row. A turn list has one level, so the depth itself is the error.
        raise DataError(
            file, f"nested too deeply (expected a flat JSON list of strings): {raw[:40]!r}", row, field
        ) from None
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
