"""Temperature scaling: one scalar T fitted on out-of-fold predictions, p_k ∝ p_k^(1/T)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from arenapref.evaluate.metrics import EPS, log_loss


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: Sequence[int], bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T in `bounds` that minimises the log loss of the scaled probabilities (searched in log T)."""
    result = minimize_scalar(
        lambda log_t: log_loss(labels, apply_temperature(probs, float(np.exp(log_t)))),
        bounds=tuple(np.log(bounds)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))
