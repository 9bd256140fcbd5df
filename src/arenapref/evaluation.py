"""Out-of-fold evaluation: gather every fold's validation predictions and score them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.calibration import apply_temperature, fit_temperature
from arenapref.features import features_oof
from arenapref.metrics import accuracy, class_prior, log_loss


def gather_oof(oof_paths: Sequence[str | Path], train: pl.DataFrame) -> pl.DataFrame:
    """All OOF predictions, checked to cover every kept training row exactly once."""
    oof = pl.concat([pl.read_parquet(p) for p in oof_paths]).sort("id")
    duplicated = oof.filter(pl.col("id").is_duplicated())["id"].unique().to_list()
    if duplicated:
        raise ValueError(f"rows predicted by more than one fold: ids {duplicated[:10]}")
    missing = set(train["id"].to_list()) - set(oof["id"].to_list())
    if missing:
        raise ValueError(f"{len(missing)} training rows have no out-of-fold prediction, e.g. ids {sorted(missing)[:10]}")
    return oof


def probabilities(frame: pl.DataFrame) -> np.ndarray:
    return frame.select(LABEL_COLUMNS).to_numpy().astype(np.float64)


def oof_prior(train: pl.DataFrame) -> np.ndarray:
    """Per row, the label frequencies of the rows its fold trained on: the honest constant baseline."""
    probs = np.zeros((train.height, 3))
    folds = train["fold"].to_numpy()
    labels = train["label"].to_numpy()
    for fold in np.unique(folds):
        probs[folds == fold] = class_prior(labels[folds != fold])
    return probs


def score_oof(oof: pl.DataFrame, train: pl.DataFrame) -> dict:
    """Log loss and accuracy per fold and overall, with the class prior for reference."""
    train = train.sort("id")
    oof = oof.sort("id")
    labels = train["label"].to_numpy()
    probs = probabilities(oof)
    prior = oof_prior(train)
    per_fold = {}
    for fold in sorted(train["fold"].unique().to_list()):
        mask = train["fold"].to_numpy() == fold
        per_fold[str(fold)] = {
            "rows": int(mask.sum()),
            "log_loss": log_loss(labels[mask], probs[mask]),
            "accuracy": accuracy(labels[mask], probs[mask]),
            "prior_log_loss": log_loss(labels[mask], prior[mask]),
        }
    overall = {
        "rows": int(len(labels)),
        "log_loss": log_loss(labels, probs),
        "accuracy": accuracy(labels, probs),
        "prior_log_loss": log_loss(labels, prior),
        "prior_accuracy": accuracy(labels, prior),
    }
    overall["improvement_over_prior"] = overall["prior_log_loss"] - overall["log_loss"]
    return {"overall": overall, "per_fold": per_fold}


def reference_scores(oof: pl.DataFrame, train: pl.DataFrame) -> dict:
    """What the model's OOF score is measured against, and what calibration would add.

    The features baseline is fitted per fold like the model. The temperature is fitted on all OOF
    rows (the value to apply to test predictions); its effect is scored cross-fitted, each fold
    scaled by a temperature fitted on the other folds, so the gain is not measured on the rows
    that chose it.
    """
    train = train.sort("id")
    probs = probabilities(oof.sort("id"))
    labels = train["label"].to_numpy()
    folds = train["fold"].to_numpy()
    features = features_oof(train)
    cross_fitted = np.zeros_like(probs)
    for fold in np.unique(folds):
        held_out = folds == fold
        cross_fitted[held_out] = apply_temperature(probs[held_out], fit_temperature(probs[~held_out], labels[~held_out]))
    return {
        "features_baseline": {"log_loss": log_loss(labels, features), "accuracy": accuracy(labels, features)},
        "temperature_scaling": {
            "temperature": fit_temperature(probs, labels),
            "log_loss_before": log_loss(labels, probs),
            "log_loss_after_cross_fitted": log_loss(labels, cross_fitted),
        },
    }
