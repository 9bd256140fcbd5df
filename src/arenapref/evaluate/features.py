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
    stats = table.select(
        *_stats("response_a"),
        *_stats("response_b"),
        identical=(pl.col("response_a") == pl.col("response_b")).cast(pl.Float64),
    )
    a = np.log1p(stats.select([f"response_a:{n}" for n in FEATURE_NAMES]).to_numpy().astype(np.float64))
    b = np.log1p(stats.select([f"response_b:{n}" for n in FEATURE_NAMES]).to_numpy().astype(np.float64))
    return np.hstack([a, b, a - b, stats["identical"].to_numpy()[:, None]])


def _fit(features: np.ndarray, labels: np.ndarray, seed: int):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed))
    return model.fit(features, labels)


def _predict(model, features: np.ndarray) -> np.ndarray:
    probs = np.zeros((len(features), 3))
    probs[:, model.classes_] = model.predict_proba(features)  # a class absent in training stays 0
    return probs


def features_oof(train: pl.DataFrame, seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities (A, B, tie) of logistic regression on text_features, in row order."""
    features = text_features(train)
    labels = train["label"].to_numpy()
    folds = train["fold"].to_numpy()
    probs = np.zeros((train.height, 3))
    for fold in np.unique(folds):
        held_out = folds == fold
        probs[held_out] = _predict(_fit(features[~held_out], labels[~held_out], seed), features[held_out])
    return probs


def fit_features_model(train: pl.DataFrame, seed: int = 0) -> dict:
    """The features model fitted on every training row, as plain numbers (JSON-safe, so an export
    can carry it without pickle)."""
    pipeline = _fit(text_features(train), train["label"].to_numpy(), seed)
    scaler, regression = pipeline[0], pipeline[-1]
    return {
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": regression.coef_.tolist(),
        "intercept": regression.intercept_.tolist(),
        "classes": regression.classes_.tolist(),
    }


def predict_features_model(params: dict, table: pl.DataFrame) -> np.ndarray:
    """Probabilities (A, B, tie) of a fit_features_model result, the same as the fitted pipeline's."""
    probs = np.zeros((table.height, 3))
    if table.height == 0:
        return probs
    x = (text_features(table) - np.asarray(params["mean"])) / np.asarray(params["scale"])
    logits = x @ np.asarray(params["coef"]).T + np.asarray(params["intercept"])
    if logits.shape[1] == 1:  # two classes seen in training: one logistic score for the second
        logits = np.hstack([np.zeros_like(logits), logits])
    logits -= logits.max(axis=1, keepdims=True)
    fitted = np.exp(logits)
    probs[:, params["classes"]] = fitted / fitted.sum(axis=1, keepdims=True)
    return probs
