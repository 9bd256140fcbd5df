"""A teacher's probabilities for training rows (data.soft_labels), for distillation.

The file has a submission's columns: id, winner_model_a, winner_model_b, winner_tie; its rows may
be main rows, extra rows, or pairs without a winner (pseudo-labelled pairs, given as extra rows in
test.csv's schema). Each probability must be in [0, 1] and a row's three must sum to 1 (within
1e-3); anything else is a one-line error naming the file, the row and the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.data.parsing import SUBMISSION_COLUMNS, DataError, parse_ids, read_csv_strict

TEACHER_COLUMNS = ("teacher_model_a", "teacher_model_b", "teacher_tie")
SUM_TOLERANCE = 1e-3


def read_soft_labels(path: str | Path) -> pl.DataFrame:
    """id and the three teacher columns, validated."""
    path = Path(path)
    file = str(path)
    if path.suffix == ".parquet":
        if not path.exists():
            raise DataError(path, "file not found (data.soft_labels)")
        frame = pl.read_parquet(path)
        missing = [c for c in SUBMISSION_COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; expected {list(SUBMISSION_COLUMNS)}")
        frame = frame.select(pl.col(c).cast(pl.String) for c in SUBMISSION_COLUMNS)
        line = None
    else:
        csv = read_csv_strict(path, SUBMISSION_COLUMNS)
        frame, line = csv.frame, csv.line
    ids = parse_ids(frame, file, line)
    probabilities = {}
    for name in LABEL_COLUMNS:
        values = frame[name].str.strip_chars().cast(pl.Float64, strict=False)
        bad = values.is_null() | values.is_nan() | (values < 0) | (values > 1)
        if bad.any():
            index = int(bad.arg_true()[0])
            raise DataError(file, f"a probability in [0, 1] is needed, got {frame[name][index]!r}", ids[index], name)
        probabilities[name] = values
    table = pl.DataFrame({"id": pl.Series(ids, dtype=pl.Int64), **probabilities})
    sums = table.select(pl.sum_horizontal(LABEL_COLUMNS)).to_series().to_numpy()
    off = np.abs(sums - 1) > SUM_TOLERANCE
    if off.any():
        index = int(np.flatnonzero(off)[0])
        raise DataError(file, f"the three probabilities sum to {sums[index]:.6f}, not 1", ids[index], "winner_*")
    return table.rename(dict(zip(LABEL_COLUMNS, TEACHER_COLUMNS, strict=True)))


def attach_soft_labels(table: pl.DataFrame, soft: pl.DataFrame) -> pl.DataFrame:
    """The table with the teacher's three columns (null for rows the file does not cover)."""
    return table.join(soft, on="id", how="left", maintain_order="left")


def soft_label_summary(soft: pl.DataFrame, main: pl.DataFrame, extra: pl.DataFrame) -> dict:
    """How many of the file's rows matched main rows, extra rows, or nothing (ignored, counted)."""
    ids = soft["id"]
    main_hits = int(ids.is_in(main["id"].implode()).sum())
    extra_hits = int(ids.is_in(extra["id"].implode()).sum())
    return {
        "rows": soft.height,
        "main_rows": main_hits,
        "extra_rows": extra_hits,
        "unmatched": soft.height - main_hits - extra_hits,
    }
