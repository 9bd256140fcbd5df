"""Turn the competition CSV files into clean parquet tables with folds and a data report.

Rule for rows (documented in the README): a train row is dropped, and counted by reason, when
its prompt or a response is missing or has no text in any turn, or when it repeats an earlier
row exactly (same conversation, same label). Test rows are never dropped: the submission must
cover every test id, so empty text stays empty.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from arenapref.folds import assign_folds, prompt_groups
from arenapref.parsing import (
    TEST_COLUMNS,
    TEXT_COLUMNS,
    TRAIN_COLUMNS,
    DataError,
    parse_ids,
    parse_labels,
    parse_text_columns,
    read_csv_strict,
)

LABEL_NAMES = ("model_a", "model_b", "tie")


@dataclass
class DataReport:
    """What happened to the rows of one input file."""

    file: str
    rows_in: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    dropped_ids: dict[str, list[int]] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    def drop_many(self, reason: str, row_ids: list[int]) -> None:
        self.dropped[reason] += len(row_ids)
        self.dropped_ids.setdefault(reason, []).extend(row_ids)

    def check_balance(self) -> None:
        """Nothing is lost silently: every input row is either kept or counted under a reason."""
        accounted = self.rows_kept + sum(self.dropped.values())
        if accounted != self.rows_in:
            raise AssertionError(f"{self.file}: {self.rows_in} rows in but {accounted} accounted for")

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
            "dropped_ids_sample": {k: v[:20] for k, v in sorted(self.dropped_ids.items())},
            "ignored_columns": self.ignored_columns,
        }


def _has_text(turns: pl.Expr) -> pl.Expr:
    """True when some turn has non-blank text; null for a missing cell."""
    return turns.list.eval(pl.element().str.contains(r"\S")).list.any()


_LENGTH_COLUMNS = (*(f"{c}_chars" for c in TEXT_COLUMNS), "n_turns")


def _with_lengths(table: pl.DataFrame) -> pl.DataFrame:
    chars = {
        f"{c}_chars": pl.col(c).list.eval(pl.element().str.len_chars()).list.sum().cast(pl.Int64) for c in TEXT_COLUMNS
    }
    return table.with_columns(**chars, n_turns=pl.col("prompt").list.len().cast(pl.Int64))


def _drop_reason(columns: tuple[str, ...]) -> pl.Expr:
    """The first reason a train row is dropped for, or null: missing cells first, then empty text."""
    reason = pl.lit(None, dtype=pl.String)
    checks = [(f"missing_{c}", pl.col(c).is_null()) for c in columns]
    checks += [(f"empty_{c}", ~_has_text(pl.col(c)).fill_null(False)) for c in columns]
    for name, condition in reversed(checks):
        reason = pl.when(condition).then(pl.lit(name)).otherwise(reason)
    return reason


def _repeats(table: pl.DataFrame, among: pl.Expr) -> np.ndarray:
    """True for rows (of those selected by `among`) that repeat an earlier one exactly: same
    conversation, same label. Hashes find the candidates; each is compared in full with the
    first row of its hash."""
    flagged = table.select(
        pl.int_range(pl.len()).alias("row"),
        among.alias("among"),
        # Hash of the columns' hashes: hashing a struct of list columns directly is several times slower.
        pl.when(among).then(pl.struct(*(pl.col(c).hash() for c in (*TEXT_COLUMNS, "label"))).hash()).alias("key"),
    )
    candidates = flagged.filter(pl.col("among") & ~pl.col("key").is_first_distinct())
    repeat = np.zeros(table.height, dtype=bool)
    if candidates.height:
        firsts = (
            flagged.filter(pl.col("among") & pl.col("key").is_in(candidates["key"].implode()))
            .group_by("key")
            .agg(pl.col("row").min().alias("first"))
        )
        rows = table.select(*TEXT_COLUMNS, "label")
        for row, first in candidates.join(firsts, on="key").select("row", "first").iter_rows():
            repeat[row] = rows.row(row) == rows.row(first)
    return repeat


def preprocess_train(path: str | Path, n_folds: int, seed: int) -> tuple[pl.DataFrame, DataReport]:
    file = str(path)
    frame, extra = read_csv_strict(path, TRAIN_COLUMNS)
    report = DataReport(file=file, rows_in=frame.height, ignored_columns=extra)
    ids = parse_ids(frame, file)
    labels = parse_labels(frame, ids, file)
    texts = parse_text_columns(frame, TEXT_COLUMNS, ids, file)

    table = pl.DataFrame({"id": pl.Series(ids, dtype=pl.Int64), **texts, "label": pl.Series(labels, dtype=pl.Int64)})
    table = table.with_columns(reason=_drop_reason(TEXT_COLUMNS))
    table = table.with_columns(
        reason=pl.when(pl.Series(_repeats(table, pl.col("reason").is_null())))
        .then(pl.lit("duplicate"))
        .otherwise(pl.col("reason"))
    )
    for reason, dropped in table.filter(pl.col("reason").is_not_null()).group_by("reason", maintain_order=True):
        report.drop_many(reason[0], dropped["id"].to_list())
    kept = table.filter(pl.col("reason").is_null()).drop("reason")
    report.rows_kept = kept.height
    report.check_balance()
    if kept.height == 0:
        raise DataError(file, "no usable rows left after dropping missing, empty and duplicate rows")
    groups = prompt_groups(kept["prompt"])
    try:
        folds = assign_folds(kept["label"].to_numpy(), groups, n_folds, seed)
    except ValueError as err:
        raise DataError(file, f"cannot assign folds: {err}") from None
    kept = _with_lengths(kept).with_columns(
        group=pl.Series(groups, dtype=pl.Int64), fold=pl.Series(folds, dtype=pl.Int64)
    )
    return kept.select("id", *TEXT_COLUMNS, *_LENGTH_COLUMNS, "label", "group", "fold"), report


def preprocess_test(path: str | Path) -> tuple[pl.DataFrame, DataReport]:
    file = str(path)
    frame, extra = read_csv_strict(path, TEST_COLUMNS)
    report = DataReport(file=file, rows_in=frame.height, ignored_columns=extra)
    ids = parse_ids(frame, file)
    texts = parse_text_columns(frame, TEXT_COLUMNS, ids, file)
    # A missing cell in test becomes an empty conversation: the row still needs a prediction.
    empty = pl.lit(pl.Series([[""]], dtype=pl.List(pl.String)))
    table = pl.DataFrame({"id": pl.Series(ids, dtype=pl.Int64), **texts})
    table = table.with_columns(pl.col(c).fill_null(empty) for c in TEXT_COLUMNS)
    report.rows_kept = frame.height
    report.check_balance()
    return _with_lengths(table).select("id", *TEXT_COLUMNS, *_LENGTH_COLUMNS), report


def summarize(train: pl.DataFrame) -> dict:
    """Label and fold counts for the data report."""
    labels = Counter(train["label"].to_list())
    folds = train.group_by("fold").agg(pl.len().alias("rows")).sort("fold")
    return {
        "label_counts": {LABEL_NAMES[k]: labels.get(k, 0) for k in range(3)},
        "fold_rows": {str(f): n for f, n in folds.iter_rows()},
        "prompt_groups": train["group"].n_unique(),
        # Rows sharing a prompt turn stay in one fold; a huge group would unbalance the folds.
        "largest_prompt_group": int(train["group"].value_counts()["count"].max()),
    }
