"""From the folds' probabilities to the submission's: an optional blend with the features
baseline, then optional temperature scaling, both fitted on out-of-fold predictions.

Each option's gain is scored cross-fitted (fitted on the other folds, applied to the held-out
fold), so metrics never credit an option with rows it was fitted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from arenapref.evaluate.calibration import apply_temperature, fit_temperature
from arenapref.evaluate.metrics import log_loss


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
    """What turns fold-averaged model probabilities into submitted ones (None: not applied)."""

    features_blend_weight: float | None = None
    temperature: float | None = None

    @classmethod
    def fit(
        cls,
        model_probs: np.ndarray,
        feature_probs: np.ndarray,
        labels: Sequence[int],
        features_blend: bool,
        temperature_scaling: bool,
    ) -> Postprocessing:
        weight = fit_blend_weight(model_probs, feature_probs, labels) if features_blend else None
        blended = blend(model_probs, feature_probs, weight) if weight is not None else model_probs
        return cls(weight, fit_temperature(blended, labels) if temperature_scaling else None)

    def apply(self, model_probs: np.ndarray, feature_probs: np.ndarray | None = None) -> np.ndarray:
        probs = np.asarray(model_probs, dtype=np.float64)
        if self.features_blend_weight is not None:
            if feature_probs is None:
                raise ValueError(
                    "this post-processing blends with the features baseline, but no features probabilities were given"
                )
            probs = blend(probs, feature_probs, self.features_blend_weight)
        if self.temperature is not None:
            probs = apply_temperature(probs, self.temperature)
        return probs / probs.sum(axis=1, keepdims=True)

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


def score_options(
    model_probs: np.ndarray, feature_probs: np.ndarray, labels: Sequence[int], folds: Sequence[int]
) -> dict[str, float]:
    """Cross-fitted OOF log loss of every combination, whichever the config applies."""
    labels, folds = np.asarray(labels), np.asarray(folds)
    scores = {"none": log_loss(labels, model_probs)}
    for name, blend_on, temperature_on in (
        ("temperature", False, True),
        ("features_blend", True, False),
        ("features_blend+temperature", True, True),
    ):
        scores[name] = log_loss(
            labels, cross_fitted(model_probs, feature_probs, labels, folds, blend_on, temperature_on)
        )
    return scores
