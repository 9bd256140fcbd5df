"""Cross-validation folds grouped by prompt text and stratified by label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def prompt_groups(prompts: pl.Series | Sequence[Sequence[str]]) -> list[int]:
    """Group rows that share any non-empty prompt turn (connected components, union-find).

    Grouping on every turn, not only the whole conversation, keeps a repeated question out of
    both sides of a fold even when it appears inside different multi-turn conversations. A
    group is named by its first row.
    """
    if not isinstance(prompts, pl.Series):
        prompts = pl.Series(list(prompts), dtype=pl.List(pl.String))
    n = len(prompts)
    turns = (
        pl.DataFrame({"row": pl.arange(0, n, eager=True), "turn": prompts})
        .explode("turn")
        .with_columns(pl.col("turn").str.strip_chars())
        .filter(pl.col("turn").is_not_null() & (pl.col("turn") != ""))
    )
    shared = turns.group_by("turn").agg(pl.col("row").unique()).filter(pl.col("row").list.len() > 1)["row"].to_list()
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for rows in shared:
        roots = {find(r) for r in rows}
        smallest = min(roots)
        for root in roots:
            parent[root] = smallest
    return [find(i) for i in range(n)]


def _water_fill(counts: np.ndarray, items: int, tiebreak: np.ndarray) -> np.ndarray:
    """How many of `items` each bin receives so the bins end as level as possible; a remainder
    goes to the bins with the smallest tiebreak."""
    level = counts.astype(np.int64).copy()
    while items > 0:
        low = np.flatnonzero(level == level.min())
        higher = level[level > level.min()]
        step = int(higher.min() - level.min()) if len(higher) else items
        if step * len(low) >= items:
            whole, remainder = divmod(items, len(low))
            level[low] += whole
            level[low[np.argsort(tiebreak[low], kind="stable")[:remainder]]] += 1
            break
        level[low] += step
        items -= step * len(low)
    return level - counts


def assign_folds(labels: Sequence[int], groups: Sequence[int], n_folds: int, seed: int) -> np.ndarray:
    """Fold index per row: groups never straddle folds, label shares stay close across folds.

    Groups of several rows go first, largest first (equal sizes in seeded random order), each to
    the fold with the fewest rows. Then the single rows of each label, in seeded random order,
    level the folds' counts of that label. Linear in the rows.
    """
    labels = np.asarray(labels, dtype=np.int64)
    _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_index.max()) + 1 if len(group_index) else 0
    if n_groups < n_folds:
        raise ValueError(f"only {n_groups} distinct prompt groups, fewer than n_folds={n_folds}")
    n_classes = int(labels.max()) + 1
    counts = np.zeros((n_groups, n_classes), dtype=np.int64)
    np.add.at(counts, (group_index, labels), 1)
    sizes = counts.sum(axis=1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]

    group_fold = np.full(n_groups, -1, dtype=np.int64)
    fold_labels = np.zeros((n_folds, n_classes), dtype=np.int64)
    for group in order[sizes[order] > 1].tolist():
        fold = int(np.lexsort((fold_labels @ (counts[group] > 0), fold_labels.sum(axis=1)))[0])
        group_fold[group] = fold
        fold_labels[fold] += counts[group]
    singles = order[sizes[order] == 1]
    single_label = counts[singles].argmax(axis=1)
    for label in range(n_classes):
        members = singles[single_label == label]  # already in random order
        add = _water_fill(fold_labels[:, label], len(members), tiebreak=fold_labels.sum(axis=1))
        group_fold[members] = np.repeat(np.arange(n_folds), add)
        fold_labels[:, label] += add
    return group_fold[group_index]
