"""A/B swapping: the same comparison with the two responses exchanged.

Used twice: as training data (swap augmentation: the model cannot learn a position preference that
the labels do not support) and at prediction time (swap test-time augmentation: predict both
orders, flip the swapped prediction back, average).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from arenapref.data.parsing import NO_LABEL

# Column pairs that trade places when A and B swap; a column missing from a table is skipped.
SWAPPED_PAIRS = (
    ("response_a", "response_b"),
    ("response_a_chars", "response_b_chars"),
    ("model_a", "model_b"),
    ("teacher_model_a", "teacher_model_b"),  # a teacher's probabilities (data.soft_labels) swap with the label
)
FLIP = [1, 0, 2]  # class order A wins, B wins, tie -> B wins, A wins, tie


def swap_responses(table: pl.DataFrame) -> pl.DataFrame:
    """Every row with A and B exchanged; the label (if present) flips A-wins and B-wins, a tie (or
    no label) stays, and a teacher's probabilities flip with it.

    Every other column (id, fold, group) is kept, so a swapped row stays in its source row's fold.
    """
    renames = {}
    for left, right in SWAPPED_PAIRS:
        if left in table.columns and right in table.columns:
            renames |= {left: right, right: left}
    swapped = table.rename(renames).select(table.columns)
    if "label" in table.columns:
        swapped = swapped.with_columns(
            pl.col("label").replace_strict({0: 1, 1: 0, 2: 2, NO_LABEL: NO_LABEL}, return_dtype=table.schema["label"])
        )
    return swapped


def flip_probabilities(probs: np.ndarray) -> np.ndarray:
    """Probabilities predicted for the swapped order, expressed in the original order."""
    return np.asarray(probs)[:, FLIP]


def tta_halves(probs: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of `rows` rows followed by those of their swapped copies (swap TTA's input
    order), as the direct half and the swapped half flipped back; their mean is the TTA result."""
    return probs[:rows], flip_probabilities(probs[rows:])
