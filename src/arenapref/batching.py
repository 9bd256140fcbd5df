"""Length-aware batching shared by training and inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence; returns input_ids and attention_mask."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def length_sorted_chunks(lengths: Sequence[int], chunk_size: int, epochs: int = 1) -> list[np.ndarray]:
    """Row indices sorted by length (ties by position), cut into chunks; repeated per epoch."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    chunks = [order[start : start + chunk_size] for start in range(0, len(order), chunk_size)]
    return [chunk for _ in range(epochs) for chunk in chunks]


def fixed_size_batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]


def token_budget_batches(lengths: Sequence[int], tokens_per_batch: int, max_rows: int) -> list[np.ndarray]:
    """Longest rows first, each batch as many rows as fit in tokens_per_batch padded tokens.

    Longest first makes an out-of-memory error show up in the first batch, not after an hour.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        width = lengths[order[start]]  # the batch's longest row comes first
        rows = max(1, min(max_rows, tokens_per_batch // max(width, 1)))
        batches.append(order[start : start + rows])
        start += rows
    return batches
