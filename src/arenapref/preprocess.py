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

import polars as pl

from arenapref.folds import assign_folds, prompt_groups
from arenapref.parsing import (
    TEST_COLUMNS,
    TEXT_COLUMNS,
    TRAIN_COLUMNS,
    DataError,
    parse_ids,
    parse_labels,
    parse_turns,
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

    def drop(self, reason: str, row_id: int) -> None:
        self.dropped[reason] += 1
        self.dropped_ids.setdefault(reason, []).append(row_id)

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


def _parse_text_columns(frame: pl.DataFrame, ids: list[int], file: str) -> dict[str, list[list[str] | None]]:
    return {
        column: [
            parse_turns(raw, file=file, row=row_id, field=column)
            for raw, row_id in zip(frame[column].to_list(), ids)
        ]
        for column in TEXT_COLUMNS
    }


def _has_text(turns: list[str] | None) -> bool:
    return turns is not None and any(t.strip() for t in turns)


def _lengths(texts: dict[str, list[list[str]]]) -> dict[str, list[int]]:
    lengths = {f"{c}_chars": [sum(len(t) for t in turns) for turns in texts[c]] for c in TEXT_COLUMNS}
    lengths["n_turns"] = [len(turns) for turns in texts["prompt"]]
    return lengths


def _table(ids: list[int], texts: dict[str, list[list[str]]], **extra: list) -> pl.DataFrame:
    list_type = pl.List(pl.String)
    columns = {"id": pl.Series(ids, dtype=pl.Int64)}
    columns.update({c: pl.Series(texts[c], dtype=list_type) for c in TEXT_COLUMNS})
    columns.update({k: pl.Series(v, dtype=pl.Int64) for k, v in _lengths(texts).items()})
    columns.update({k: pl.Series(v, dtype=pl.Int64) for k, v in extra.items()})
    return pl.DataFrame(columns)


def preprocess_train(path: str | Path, n_folds: int, seed: int) -> tuple[pl.DataFrame, DataReport]:
    file = str(path)
    frame, extra = read_csv_strict(path, TRAIN_COLUMNS)
    report = DataReport(file=file, rows_in=frame.height, ignored_columns=extra)
    ids = parse_ids(frame, file)
    labels = parse_labels(frame, ids, file)
    texts = _parse_text_columns(frame, ids, file)

    keep: list[int] = []
    seen: set[tuple] = set()
    for index, row_id in enumerate(ids):
        row_texts = [texts[c][index] for c in TEXT_COLUMNS]
        missing = [c for c, turns in zip(TEXT_COLUMNS, row_texts) if turns is None]
        if missing:
            report.drop(f"missing_{missing[0]}", row_id)
            continue
        empty = [c for c, turns in zip(TEXT_COLUMNS, row_texts) if not _has_text(turns)]
        if empty:
            report.drop(f"empty_{empty[0]}", row_id)
            continue
        key = (*(tuple(t) for t in row_texts), labels[index])
        if key in seen:
            report.drop("duplicate", row_id)
            continue
        seen.add(key)
        keep.append(index)

    report.rows_kept = len(keep)
    report.check_balance()
    if not keep:
        raise DataError(file, "no usable rows left after dropping missing, empty and duplicate rows")
    kept_ids = [ids[i] for i in keep]
    kept_texts = {c: [texts[c][i] for i in keep] for c in TEXT_COLUMNS}
    kept_labels = [labels[i] for i in keep]
    groups = prompt_groups(kept_texts["prompt"])
    try:
        folds = assign_folds(kept_labels, groups, n_folds, seed)
    except ValueError as err:
        raise DataError(file, f"cannot assign folds: {err}") from None
    table = _table(kept_ids, kept_texts, label=kept_labels, group=groups, fold=folds.tolist())
    return table, report


def preprocess_test(path: str | Path) -> tuple[pl.DataFrame, DataReport]:
    file = str(path)
    frame, extra = read_csv_strict(path, TEST_COLUMNS)
    report = DataReport(file=file, rows_in=frame.height, ignored_columns=extra)
    ids = parse_ids(frame, file)
    texts = _parse_text_columns(frame, ids, file)
    # A missing cell in test becomes an empty conversation: the row still needs a prediction.
    texts = {c: [turns if turns is not None else [""] for turns in texts[c]] for c in TEXT_COLUMNS}
    report.rows_kept = frame.height
    report.check_balance()
    return _table(ids, texts), report


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
