"""Turn the competition CSV files into clean parquet tables with folds and a data report.

Rule for rows (documented in the README): a train row is dropped, and counted by reason, when
its prompt or a response is missing or has no text in any turn, or when it repeats an earlier
row exactly (same conversation, same label). Test rows are never dropped: the submission must
cover every test id, so empty text stays empty.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from arenapref.data.folds import MAX_TURN_ROWS, MIN_TURN_CHARS, assign_folds, left_out_turns, prompt_groups
from arenapref.data.parsing import (
    NO_LABEL,
    TEST_COLUMNS,
    TEXT_COLUMNS,
    TRAIN_COLUMNS,
    CsvFile,
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
    dropped_lines: dict[str, list[int]] = field(default_factory=dict)  # dropped records without an id: their lines
    ignored_columns: list[str] = field(default_factory=list)
    # Rows dropped for a missing or empty text (id, responses, label): the rules for rows the model
    # cannot judge still count their labels (data/row_kinds.py).
    dropped_rows: pl.DataFrame | None = None

    @classmethod
    def of_csv(cls, file: str, csv: CsvFile) -> DataReport:
        """Every record after the header is a row in; blank lines are dropped here, by line number."""
        report = cls(file=file, rows_in=csv.frame.height + len(csv.blank_lines), ignored_columns=csv.extra)
        if csv.blank_lines:
            report.dropped["blank_line"] += len(csv.blank_lines)
            report.dropped_lines["blank_line"] = list(csv.blank_lines)
        return report

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
            "dropped_lines_sample": {k: v[:20] for k, v in sorted(self.dropped_lines.items())},
            "ignored_columns": self.ignored_columns,
        }


def has_text(turns: pl.Expr) -> pl.Expr:
    """True when some turn has non-blank text; null for a missing cell."""
    return turns.list.eval(pl.element().str.contains(r"\S")).list.any()


_LENGTH_COLUMNS = (*(f"{c}_chars" for c in TEXT_COLUMNS), "n_turns")


def with_lengths(table: pl.DataFrame) -> pl.DataFrame:
    """Characters of each text column and the number of turns."""
    chars = {
        f"{c}_chars": pl.col(c).list.eval(pl.element().str.len_chars()).list.sum().cast(pl.Int64) for c in TEXT_COLUMNS
    }
    return table.with_columns(**chars, n_turns=pl.col("prompt").list.len().cast(pl.Int64))


def _drop_reason(columns: tuple[str, ...]) -> pl.Expr:
    """The first reason a train row is dropped for, or null: missing cells first, then empty text."""
    reason = pl.lit(None, dtype=pl.String)
    checks = [(f"missing_{c}", pl.col(c).is_null()) for c in columns]
    checks += [(f"empty_{c}", ~has_text(pl.col(c)).fill_null(False)) for c in columns]
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


def clean_train_rows(
    frame: pl.DataFrame,
    file: str,
    report: DataReport,
    line: Callable[[int], int] | None = None,
    labelled: bool = True,
) -> pl.DataFrame:
    """Train rows in the Kaggle schema (every cell text, as read from the CSV) parsed, with the rows
    the rule drops counted in `report`: id, the turn lists and the label index (NO_LABEL for rows
    of a file without winner columns: pairs a teacher labels)."""
    ids = parse_ids(frame, file, line)
    labels = parse_labels(frame, ids, file) if labelled else [NO_LABEL] * len(ids)
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
    report.dropped_rows = table.filter(pl.col("reason").is_not_null() & (pl.col("reason") != "duplicate")).select(
        "id", "response_a", "response_b", "label"
    )
    report.rows_kept = kept.height
    report.check_balance()
    if kept.height == 0:
        raise DataError(file, "no usable rows left after dropping missing, empty and duplicate rows")
    return kept


def preprocess_train(
    path: str | Path,
    n_folds: int,
    seed: int,
    max_turn_rows: int | None = MAX_TURN_ROWS,
    min_turn_chars: int = MIN_TURN_CHARS,
) -> tuple[pl.DataFrame, DataReport]:
    """Parsed, cleaned train rows with their prompt group and fold; the last two arguments are
    folds.max_turn_rows and folds.min_turn_chars (see prompt_groups)."""
    file = str(path)
    csv = read_csv_strict(path, TRAIN_COLUMNS)
    report = DataReport.of_csv(file, csv)
    kept = clean_train_rows(csv.frame, file, report, csv.line)
    groups = prompt_groups(kept["prompt"], max_turn_rows, min_turn_chars)
    try:
        folds = assign_folds(kept["label"].to_numpy(), groups, n_folds, seed)
    except ValueError as err:
        raise DataError(file, f"cannot assign folds: {err}") from None
    kept = with_lengths(kept).with_columns(
        group=pl.Series(groups, dtype=pl.Int64), fold=pl.Series(folds, dtype=pl.Int64)
    )
    return kept.select("id", *TEXT_COLUMNS, *_LENGTH_COLUMNS, "label", "group", "fold"), report


def preprocess_test(path: str | Path) -> tuple[pl.DataFrame, DataReport]:
    file = str(path)
    csv = read_csv_strict(path, TEST_COLUMNS)
    frame, report = csv.frame, DataReport.of_csv(file, csv)
    ids = parse_ids(frame, file, csv.line)
    texts = parse_text_columns(frame, TEXT_COLUMNS, ids, file)
    # A missing cell in test becomes an empty conversation: the row still needs a prediction.
    empty = pl.lit(pl.Series([[""]], dtype=pl.List(pl.String)))
    table = pl.DataFrame({"id": pl.Series(ids, dtype=pl.Int64), **texts})
    table = table.with_columns(pl.col(c).fill_null(empty) for c in TEXT_COLUMNS)
    report.rows_kept = len(ids)
    report.check_balance()
    return with_lengths(table).select("id", *TEXT_COLUMNS, *_LENGTH_COLUMNS), report


def summarize(
    train: pl.DataFrame,
    max_turn_rows: int | None = MAX_TURN_ROWS,
    min_turn_chars: int = MIN_TURN_CHARS,
    top_turns: int = 20,
) -> dict:
    """Label and fold counts for the data report; the grouping rule's arguments are those
    preprocess_train grouped with, to name the turns it left out."""
    labels = Counter(train["label"].to_list())
    folds = (
        train.group_by("fold")
        .agg(pl.len().alias("rows"), *((pl.col("label") == k).mean().alias(name) for k, name in enumerate(LABEL_NAMES)))
        .sort("fold")
    )
    sizes = folds["rows"].to_numpy()
    shares = folds.select(LABEL_NAMES).to_numpy()
    largest = int(train["group"].value_counts()["count"].max())
    left_out = left_out_turns(train["prompt"], max_turn_rows, min_turn_chars)
    return {
        "label_counts": {LABEL_NAMES[k]: labels.get(k, 0) for k in range(3)},
        "fold_rows": {str(f): n for f, n in folds.select("fold", "rows").iter_rows()},
        "fold_label_shares": {
            str(row["fold"]): {name: round(row[name], 4) for name in LABEL_NAMES} for row in folds.iter_rows(named=True)
        },
        # (largest - smallest) / mean fold, and the widest gap of one label's share between folds.
        "fold_rows_spread": round(float((sizes.max() - sizes.min()) / sizes.mean()), 4),
        "fold_label_share_spread": round(float((shares.max(axis=0) - shares.min(axis=0)).max()), 4),
        "prompt_groups": train["group"].n_unique(),
        # Rows sharing a prompt turn stay in one fold; a huge group would unbalance the folds.
        "largest_prompt_group": largest,
        "largest_prompt_group_share": round(largest / train.height, 4),
        "grouping": {
            "max_turn_rows": max_turn_rows,
            "min_turn_chars": min_turn_chars,
            # Turns found in several distinct prompts that join none of them: too short or too common.
            "turns_left_out": left_out.height,
            "most_frequent_turns_left_out": left_out.head(top_turns).to_dicts(),
        },
    }
