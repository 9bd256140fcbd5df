"""Scores of probability predictions, computed the way Kaggle scores the competition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = 1e-15  # Kaggle clips probabilities to [eps, 1 - eps] before the log


def row_log_losses(labels: Sequence[int], probs: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Each row's log loss; rows are renormalised after clipping, as Kaggle does."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    probs = probs / probs.sum(axis=1, keepdims=True)
    labels = np.asarray(labels)
    return -np.log(probs[np.arange(len(labels)), labels])


def log_loss(labels: Sequence[int], probs: np.ndarray, eps: float = EPS) -> float:
    """Multi-class log loss, the competition's score."""
    return float(np.mean(row_log_losses(labels, probs, eps)))


def accuracy(labels: Sequence[int], probs: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(labels)))


def class_prior(labels: Sequence[int], n_classes: int = 3) -> np.ndarray:
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    return counts / counts.sum()


def prior_log_loss(train_labels: Sequence[int], eval_labels: Sequence[int]) -> float:
    """Log loss of always predicting the label frequencies of `train_labels`."""
    prior = class_prior(train_labels)
    return log_loss(eval_labels, np.tile(prior, (len(eval_labels), 1)))


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean (of paired per-row differences, or of per-seed results)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def paired_difference(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Mean of per-row differences (first - second, e.g. per-row log losses of two methods on the
    same rows) and its standard error."""
    difference = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    return float(difference.mean()), standard_error(difference)
