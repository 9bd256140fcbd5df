"""Rows the model cannot judge: both responses the same, or one of them without text. The
evaluate stage answers them by rule (evaluate/row_rules.py); the data stage marks them, including
training rows it drops from the model's training (an empty response), whose labels still count."""

from __future__ import annotations

import polars as pl

from arenapref.data.preprocess import has_text

IDENTICAL = "identical_responses"
EMPTY_A = "empty_response_a"
EMPTY_B = "empty_response_b"
RULES = (IDENTICAL, EMPTY_A, EMPTY_B)


def _no_text(column: str) -> pl.Expr:
    """True for a missing cell or one without text in any turn (preprocess drops such train rows)."""
    return ~has_text(pl.col(column)).fill_null(False)


def rule_kinds(table: pl.DataFrame) -> pl.Series:
    """Per row, the rule that judges it (identical first: two empty answers are identical), or null."""
    stripped = {c: pl.col(c).list.eval(pl.element().str.strip_chars()) for c in ("response_a", "response_b")}
    kind = (
        pl.when((stripped["response_a"] == stripped["response_b"]) | (_no_text("response_a") & _no_text("response_b")))
        .then(pl.lit(IDENTICAL))
        .when(_no_text("response_a"))
        .then(pl.lit(EMPTY_A))
        .when(_no_text("response_b"))
        .then(pl.lit(EMPTY_B))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return table.select(kind.alias("rule")).to_series()


def rule_rows(kept: pl.DataFrame, dropped: pl.DataFrame | None) -> pl.DataFrame:
    """The training rows a rule judges, for its counts: kept rows (with their fold) and rows
    dropped from the model's training for an empty or missing text (fold -1: in no fold, so every
    fold's counts include them). Columns: id, rule, label, fold."""
    parts = [kept.select("id", rule_kinds(kept), "label", "fold")]
    if dropped is not None and dropped.height:
        parts.append(dropped.select("id", rule_kinds(dropped), "label", pl.lit(-1, dtype=pl.Int64).alias("fold")))
    return pl.concat(parts, how="vertical_relaxed").filter(pl.col("rule").is_not_null())
