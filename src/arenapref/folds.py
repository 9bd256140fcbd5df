"""Cross-validation folds grouped by prompt text and stratified by label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def prompt_groups(prompts: Sequence[Sequence[str]]) -> list[int]:
    """Group rows that share any non-empty prompt turn (connected components, union-find).

    Grouping on every turn, not only the whole conversation, keeps a repeated question out of
    both sides of a fold even when it appears inside different multi-turn conversations.
    """
    parent = list(range(len(prompts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_row_with_turn: dict[str, int] = {}
    for row, turns in enumerate(prompts):
        for turn in turns:
            key = turn.strip()
            if not key:
                continue
            other = first_row_with_turn.setdefault(key, row)
            root_a, root_b = find(row), find(other)
            if root_a != root_b:
                parent[root_b] = root_a
    return [find(i) for i in range(len(prompts))]


def assign_folds(labels: Sequence[int], groups: Sequence[int], n_folds: int, seed: int) -> np.ndarray:
    """Fold index per row: groups never straddle folds, label shares stay close across folds."""
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise ValueError(f"only {n_groups} distinct prompt groups, fewer than n_folds={n_folds}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, valid_index) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[valid_index] = fold
    return folds
