"""Rules for rows the model cannot judge: identical responses, or an empty one.

A model reads such a pair like any other and hedges (about 0.38 tie on identical pairs, which are
nearly all ties in the competition's rows); the label distribution of such rows in the training
data says more. The distribution is counted per rule with add-one smoothing (labels are noisy: a
rule never predicts 0 or 1), and an empty response B is an empty response A with the sides
exchanged, so the two pool their counts. Rows dropped from the model's training (an empty
response) still count. In the out-of-fold scores the counts for fold k come from rows outside
fold k, like every other post-processing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from arenapref.data.augment import FLIP
from arenapref.data.row_kinds import EMPTY_A, EMPTY_B, IDENTICAL, RULES

SMOOTHING = 1.0  # added to each class's count


def rule_distributions(kinds: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Each rule's smoothed label distribution from training rows (kinds: rule names or None)."""
    kinds, labels = np.asarray(kinds, dtype=object), np.asarray(labels)
    identical = np.bincount(labels[kinds == IDENTICAL], minlength=3).astype(np.float64)
    # Empty B, seen from the other side, is empty A: its label flips A and B.
    empty_a = np.bincount(labels[kinds == EMPTY_A], minlength=3) + np.bincount(
        np.asarray(FLIP)[labels[kinds == EMPTY_B]], minlength=3
    )
    out = {}
    for rule, counts in ((IDENTICAL, identical), (EMPTY_A, empty_a.astype(np.float64))):
        smoothed = counts + SMOOTHING
        out[rule] = (smoothed / smoothed.sum()).tolist()
    out[EMPTY_B] = np.asarray(out[EMPTY_A])[FLIP].tolist()
    return out


def rule_counts(kinds: np.ndarray, labels: np.ndarray) -> dict[str, list[int]]:
    kinds, labels = np.asarray(kinds, dtype=object), np.asarray(labels)
    return {rule: np.bincount(labels[kinds == rule], minlength=3).tolist() for rule in RULES}


def apply_rules(probs: np.ndarray, kinds: np.ndarray, distributions: Mapping[str, list[float]]) -> np.ndarray:
    """The probabilities with every rule row's replaced by its rule's distribution."""
    out = np.array(probs, dtype=np.float64, copy=True)
    kinds = np.asarray(kinds, dtype=object)
    for rule, distribution in distributions.items():
        out[kinds == rule] = distribution
    return out


def cross_fitted_rules(
    probs: np.ndarray,
    kinds: np.ndarray,
    folds: np.ndarray,
    counted: pl.DataFrame,
) -> np.ndarray:
    """Out-of-fold probabilities with the rules applied, fold k's distributions counted on the rows
    of `counted` (rule, label, fold; fold -1: rows outside every fold, such as those dropped from
    training) outside fold k."""
    out = np.array(probs, dtype=np.float64, copy=True)
    counted_folds = counted["fold"].to_numpy()
    for fold in np.unique(folds):
        others = counted_folds != fold
        distributions = rule_distributions(counted["rule"].to_numpy()[others], counted["label"].to_numpy()[others])
        held_out = folds == fold
        out[held_out] = apply_rules(probs[held_out], np.asarray(kinds)[held_out], distributions)
    return out
