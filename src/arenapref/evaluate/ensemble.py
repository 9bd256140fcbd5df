"""From the folds' probabilities to the submission's: an optional blend with the features
baseline, then optional temperature scaling, both fitted on out-of-fold predictions, then the
rules for rows the model cannot judge (row_rules.py).

Each option's gain is scored cross-fitted (fitted on the other folds, applied to the held-out
fold), so metrics never credit an option with rows it was fitted on; `auto` settings take the
combination with the lowest cross-fitted out-of-fold log loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy.optimize import minimize_scalar

from arenapref.evaluate.calibration import apply_temperature, fit_temperature
from arenapref.evaluate.metrics import log_loss
from arenapref.evaluate.row_rules import apply_rules, cross_fitted_rules, rule_distributions


def blend(model_probs: np.ndarray, feature_probs: np.ndarray, weight: float) -> np.ndarray:
    return weight * np.asarray(model_probs) + (1 - weight) * np.asarray(feature_probs)


def fit_blend_weight(model_probs: np.ndarray, feature_probs: np.ndarray, labels: Sequence[int]) -> float:
    """The model's weight in [0, 1] that minimises the blend's log loss."""
    result = minimize_scalar(
        lambda w: log_loss(labels, blend(model_probs, feature_probs, w)),
        bounds=(0.0, 1.0),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(result.x)


@dataclass(frozen=True)
class Postprocessing:
    """What turns fold-averaged model probabilities into submitted ones (None: not applied).
    `rules`: each rule's label distribution (row_rules.py), for the rows it judges."""

    features_blend_weight: float | None = None
    temperature: float | None = None
    rules: dict[str, list[float]] | None = None

    @classmethod
    def fit(
        cls,
        model_probs: np.ndarray,
        feature_probs: np.ndarray,
        labels: Sequence[int],
        features_blend: bool,
        temperature_scaling: bool,
        rule_rows: pl.DataFrame | None = None,
    ) -> Postprocessing:
        """`rule_rows` (rule, label): the training rows the rules count, when the rules apply."""
        weight = fit_blend_weight(model_probs, feature_probs, labels) if features_blend else None
        blended = blend(model_probs, feature_probs, weight) if weight is not None else model_probs
        rules = None
        if rule_rows is not None:
            rules = rule_distributions(rule_rows["rule"].to_numpy(), rule_rows["label"].to_numpy())
        return cls(weight, fit_temperature(blended, labels) if temperature_scaling else None, rules)

    def apply(
        self, model_probs: np.ndarray, feature_probs: np.ndarray | None = None, rule_kinds: np.ndarray | None = None
    ) -> np.ndarray:
        """`rule_kinds`: each row's rule (data.row_kinds.rule_kinds) or None; needed when rules apply."""
        probs = np.asarray(model_probs, dtype=np.float64)
        if self.features_blend_weight is not None:
            if feature_probs is None:
                raise ValueError(
                    "this post-processing blends with the features baseline, but no features probabilities were given"
                )
            probs = blend(probs, feature_probs, self.features_blend_weight)
        if self.temperature is not None:
            probs = apply_temperature(probs, self.temperature)
        probs = probs / probs.sum(axis=1, keepdims=True)
        if self.rules is not None:
            if rule_kinds is None:
                raise ValueError(
                    "this post-processing applies the rules for rows the model cannot judge, "
                    "but the rows' kinds were not given"
                )
            probs = apply_rules(probs, rule_kinds, self.rules)
        return probs

    def as_dict(self) -> dict:
        return asdict(self)


def cross_fitted(
    model_probs: np.ndarray,
    feature_probs: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray,
    features_blend: bool,
    temperature_scaling: bool,
) -> np.ndarray:
    """Each fold's probabilities post-processed with parameters fitted on the other folds."""
    out = np.zeros_like(np.asarray(model_probs, dtype=np.float64))
    for fold in np.unique(folds):
        held_out = folds == fold
        fitted = Postprocessing.fit(
            model_probs[~held_out], feature_probs[~held_out], labels[~held_out], features_blend, temperature_scaling
        )
        out[held_out] = fitted.apply(model_probs[held_out], feature_probs[held_out])
    return out


COMBINATIONS = {  # name: (features blend, temperature scaling)
    "none": (False, False),
    "temperature": (False, True),
    "features_blend": (True, False),
    "features_blend+temperature": (True, True),
}
RULES_SUFFIX = "+rules"


def score_options(
    model_probs: np.ndarray,
    feature_probs: np.ndarray,
    labels: Sequence[int],
    folds: Sequence[int],
    rule_kinds: np.ndarray | None = None,
    rule_rows: pl.DataFrame | None = None,
) -> dict[str, float]:
    """Cross-fitted OOF log loss of every combination, whichever the config applies; with the OOF
    rows' rule kinds and the training rows the rules count (rule, label, fold), each also with the
    rules (`<name>+rules`)."""
    labels, folds = np.asarray(labels), np.asarray(folds)
    scores = {}
    for name, (blend_on, temperature_on) in COMBINATIONS.items():
        probs = model_probs
        if blend_on or temperature_on:
            probs = cross_fitted(model_probs, feature_probs, labels, folds, blend_on, temperature_on)
        scores[name] = log_loss(labels, probs)
        if rule_kinds is not None and rule_rows is not None:
            scores[name + RULES_SUFFIX] = log_loss(labels, cross_fitted_rules(probs, rule_kinds, folds, rule_rows))
    return scores


def ranked_options(scores: dict[str, float], features_blend, temperature_scaling, rules) -> list[tuple[float, str]]:
    """The combinations the settings allow (each true, false or "auto"), lowest cross-fitted OOF
    log loss first; the first is applied."""

    def allowed(setting, on: bool) -> bool:
        return setting == "auto" or bool(setting) == on

    candidates = []
    for name, score in scores.items():
        blend_on, temperature_on, rules_on = option_settings(name)
        wanted = (
            allowed(features_blend, blend_on),
            allowed(temperature_scaling, temperature_on),
            allowed(rules, rules_on),
        )
        if all(wanted):
            candidates.append((score, name))
    if not candidates:
        raise ValueError("no post-processing option was scored for these ensemble settings")
    return sorted(candidates)


def option_settings(name: str) -> tuple[bool, bool, bool]:
    """(features blend, temperature scaling, rules) of a combination's name."""
    return (*COMBINATIONS[name.removesuffix(RULES_SUFFIX)], name.endswith(RULES_SUFFIX))
