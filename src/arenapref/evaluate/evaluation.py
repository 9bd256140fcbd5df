"""Out-of-fold evaluation: gather every fold's validation predictions and score them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.data.row_kinds import RULES, rule_kinds
from arenapref.evaluate.calibration import fit_temperature
from arenapref.evaluate.ensemble import fit_blend_weight, score_options
from arenapref.evaluate.metrics import accuracy, class_prior, log_loss
from arenapref.evaluate.row_rules import cross_fitted_rules, rule_counts, rule_distributions


def gather_oof(oof_paths: Sequence[str | Path], train: pl.DataFrame) -> pl.DataFrame:
    """All OOF predictions, checked to cover every kept training row exactly once."""
    oof = pl.concat([pl.read_parquet(p) for p in oof_paths]).sort("id")
    duplicated = oof.filter(pl.col("id").is_duplicated())["id"].unique().to_list()
    if duplicated:
        raise ValueError(f"rows predicted by more than one fold: ids {duplicated[:10]}")
    missing = set(train["id"].to_list()) - set(oof["id"].to_list())
    if missing:
        raise ValueError(
            f"{len(missing)} training rows have no out-of-fold prediction, e.g. ids {sorted(missing)[:10]}"
        )
    return oof


def probabilities(frame: pl.DataFrame, suffix: str = "") -> np.ndarray:
    """The (A, B, tie) probability columns of a prediction frame as an n x 3 array; `suffix` picks
    a swap-TTA half (`_direct`, `_swapped`)."""
    return frame.select([f"{c}{suffix}" for c in LABEL_COLUMNS]).to_numpy().astype(np.float64)


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


def reference_scores(
    oof: pl.DataFrame, train: pl.DataFrame, feature_probs: np.ndarray, rule_rows: pl.DataFrame | None = None
) -> dict:
    """What the model's OOF score is measured against, and what each post-processing option adds.

    `feature_probs` are the features baseline's OOF probabilities (fitted per fold like the model),
    in the id order of `train`. Temperature and blend weight are fitted on all OOF rows (the values
    to apply to test predictions); their gains are scored cross-fitted (see ensemble.py), with and
    without the rules for rows the model cannot judge when `rule_rows` (rule, label, fold) is given.
    """
    train = train.sort("id")
    oof = oof.sort("id")
    probs = probabilities(oof)
    labels = train["label"].to_numpy()
    folds = train["fold"].to_numpy()
    kinds = rule_kinds(train).to_numpy() if rule_rows is not None else None
    options = score_options(probs, feature_probs, labels, folds, kinds, rule_rows)
    scores = {
        "features_baseline": {"log_loss": log_loss(labels, feature_probs), "accuracy": accuracy(labels, feature_probs)},
        "temperature_scaling": {
            "temperature": fit_temperature(probs, labels),
            "log_loss_before": options["none"],
            "log_loss_after_cross_fitted": options["temperature"],
        },
        "features_blend": {
            "model_weight": fit_blend_weight(probs, feature_probs, labels),
            "log_loss_cross_fitted": options["features_blend"],
        },
        "postprocessing_cross_fitted": options,
    }
    if rule_rows is not None:
        scores["rules"] = rule_effects(probs, labels, folds, kinds, rule_rows)
    if f"{LABEL_COLUMNS[0]}_direct" in oof.columns:
        scores["swap_tta"] = {
            "log_loss_direct": log_loss(labels, probabilities(oof, "_direct")),
            "log_loss_swapped": log_loss(labels, probabilities(oof, "_swapped")),
            "log_loss_averaged": log_loss(labels, probs),
        }
    return scores


def rule_effects(
    probs: np.ndarray, labels: np.ndarray, folds: np.ndarray, kinds: np.ndarray, rule_rows: pl.DataFrame
) -> dict:
    """Per rule: the training rows it counts, the out-of-fold rows it touches and their log loss
    with the model's probabilities and with the rule's (cross-fitted), and the distribution it
    applies to test rows."""
    ruled = cross_fitted_rules(probs, kinds, folds, rule_rows)
    distributions = rule_distributions(rule_rows["rule"].to_numpy(), rule_rows["label"].to_numpy())
    counts = rule_counts(rule_rows["rule"].to_numpy(), rule_rows["label"].to_numpy())
    effects = {}
    for rule in RULES:
        touched = np.asarray(kinds, dtype=object) == rule
        effects[rule] = {
            "training_rows": int((rule_rows["rule"] == rule).sum()),
            "training_label_counts": counts[rule],
            "distribution": [round(p, 4) for p in distributions[rule]],
            "oof_rows": int(touched.sum()),
            "oof_log_loss_model": log_loss(labels[touched], probs[touched]) if touched.any() else None,
            "oof_log_loss_rule": log_loss(labels[touched], ruled[touched]) if touched.any() else None,
        }
    return effects
