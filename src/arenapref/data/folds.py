"""Cross-validation folds grouped by prompt text and stratified by label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

# The defaults of folds.max_turn_rows and folds.min_turn_chars in config/config.schema.yaml
# (tests/data/test_folds.py keeps them equal), for callers that do not read a config.
MAX_TURN_ROWS = 20
MIN_TURN_CHARS = 10


def _as_series(prompts: pl.Series | Sequence[Sequence[str | None]]) -> pl.Series:
    if isinstance(prompts, pl.Series):
        return prompts
    return pl.Series(list(prompts), dtype=pl.List(pl.String))


def _prompts_and_turns(prompts: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per row: the first row with the same whole prompt, and whether the prompt has any text.
    Per distinct non-empty turn: the rows it is in, and how many distinct whole prompts those are."""
    whole = pl.DataFrame({"row": pl.int_range(0, len(prompts), eager=True), "turns": prompts}).with_columns(
        pl.col("turns").list.eval(pl.element().str.strip_chars())
    )
    whole = whole.with_columns(
        prompt=pl.col("row").min().over("turns"),
        has_text=pl.col("turns").list.eval(pl.element().str.len_chars() > 0).list.any().fill_null(False),
    )
    turns = (
        whole.select("row", "prompt", turn="turns")
        .explode("turn")
        .filter(pl.col("turn").is_not_null() & (pl.col("turn") != ""))
        .group_by("turn")
        .agg(pl.col("row").unique(), prompts=pl.col("prompt").n_unique())
    )
    return whole, turns


def _left_out(max_turn_rows: int | None, min_turn_chars: int) -> pl.Expr:
    """Why a turn found in several distinct prompts does not join them (null: it does)."""
    too_short = pl.col("turn").str.len_chars() < min_turn_chars
    too_common = pl.lit(False) if max_turn_rows is None else pl.col("row").list.len() > max_turn_rows
    return pl.when(too_short).then(pl.lit("short")).when(too_common).then(pl.lit("common")).otherwise(None)


def prompt_groups(
    prompts: pl.Series | Sequence[Sequence[str | None]],
    max_turn_rows: int | None = None,
    min_turn_chars: int = 0,
) -> list[int]:
    """Group rows that share their whole prompt or a distinctive prompt turn (connected components,
    union-find). A group is named by its first row.

    Grouping on turns, not only the whole conversation, keeps a repeated question out of both
    sides of a fold even when it appears inside different multi-turn conversations. A generic
    turn ("hello", "continue") says nothing of the sort, and at the competition's size it would
    chain thousands of unrelated conversations into one group: a turn shorter than
    `min_turn_chars`, or in more than `max_turn_rows` rows (None: no limit), joins nothing, so
    no one turn adds more than `max_turn_rows` rows to a group. Rows with the same whole prompt
    are always one group. The defaults join on every turn.
    """
    whole, turns = _prompts_and_turns(_as_series(prompts))
    # A turn within one whole prompt only links rows the whole prompt links already.
    linking = turns.filter((pl.col("prompts") > 1) & _left_out(max_turn_rows, min_turn_chars).is_null())
    # Rows with one whole prompt start out under its first row, which is the smallest row of
    # the set: the invariant the unions below keep (a root is the smallest row of its group).
    parent = whole.select(pl.when(pl.col("has_text")).then(pl.col("prompt")).otherwise(pl.col("row")))
    parent = parent.to_series().to_list()

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for rows in linking["row"].to_list():
        roots = {find(r) for r in rows}
        smallest = min(roots)
        for root in roots:
            parent[root] = smallest
    return [find(i) for i in range(len(parent))]


def left_out_turns(
    prompts: pl.Series | Sequence[Sequence[str | None]], max_turn_rows: int | None, min_turn_chars: int
) -> pl.DataFrame:
    """The turns found in several distinct prompts that prompt_groups does not join on: turn,
    rows, prompts (distinct whole prompts) and reason (short or common), most rows first."""
    _, turns = _prompts_and_turns(_as_series(prompts))
    return (
        turns.filter(pl.col("prompts") > 1)
        .select("turn", "prompts", rows=pl.col("row").list.len(), reason=_left_out(max_turn_rows, min_turn_chars))
        .filter(pl.col("reason").is_not_null())
        .sort(["rows", "turn"], descending=[True, False])
    )


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


def whole_groups(prompts: pl.Series | Sequence[Sequence[str | None]], rows: int, seed: int) -> np.ndarray:
    """A mask of `rows` rows taken as whole prompt groups (prompt_groups' default rule) in a seeded
    order: a held-back test set, or extra training data, that shares no prompt with the rest."""
    groups = np.asarray(prompt_groups(prompts))
    held = np.zeros(len(groups), dtype=bool)
    for group in np.random.default_rng(seed).permutation(np.unique(groups)):
        members = groups == group
        if held.sum() + members.sum() <= rows:
            held |= members
        if held.sum() == rows:
            break
    return held
