"""A fast features baseline: text statistics of the two answers and logistic regression, fitted
per fold like the model. A floor every run reports: a model that cannot beat it has not learned
more than length and formatting."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

RESPONSES = ("response_a", "response_b")


def _stats(column: str) -> list[pl.Expr]:
    text = pl.col(column).list.join("\n")
    return [
        text.str.len_chars().alias(f"{column}:chars"),
        text.str.count_matches("\n").alias(f"{column}:lines"),
        text.str.count_matches(r"(?m)^\s*#{1,6}\s").alias(f"{column}:headers"),
        text.str.count_matches(r"(?m)^\s*(?:[-*+]|\d+\.)\s").alias(f"{column}:list_items"),
        text.str.count_matches("```").alias(f"{column}:code_fences"),
        text.str.count_matches(r"\*\*").alias(f"{column}:bold"),
    ]


FEATURE_NAMES = ("chars", "lines", "headers", "list_items", "code_fences", "bold")


def text_features(table: pl.DataFrame) -> np.ndarray:
    """Per row: log1p of each statistic for A and for B, their differences, and whether the two
    answers are identical (almost always a tie)."""
    stats = table.select(*_stats("response_a"), *_stats("response_b"),
                         identical=(pl.col("response_a") == pl.col("response_b")).cast(pl.Float64))
    a = np.log1p(stats.select([f"response_a:{n}" for n in FEATURE_NAMES]).to_numpy().astype(np.float64))
    b = np.log1p(stats.select([f"response_b:{n}" for n in FEATURE_NAMES]).to_numpy().astype(np.float64))
    return np.hstack([a, b, a - b, stats["identical"].to_numpy()[:, None]])


def features_oof(train: pl.DataFrame, seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities (A, B, tie) of logistic regression on text_features, in row order."""
    features = text_features(train)
    labels = train["label"].to_numpy()
    folds = train["fold"].to_numpy()
    probs = np.zeros((train.height, 3))
    for fold in np.unique(folds):
        held_out = folds == fold
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed))
        model.fit(features[~held_out], labels[~held_out])
        fitted = np.zeros((held_out.sum(), 3))
        fitted[:, model.classes_] = model.predict_proba(features[held_out])
        probs[held_out] = fitted
    return probs
