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


def length_grouped_chunks(
    lengths: Sequence[int], batch_size: int, chunk_size: int, epochs: int, seed: int
) -> list[list[np.ndarray]]:
    """Training order: per epoch, the order of transformers' length-grouped sampler (the Trainer's
    `group_by_length`), cut into batches, grouped into chunks of about `chunk_size` rows (the unit
    of checkpointing).

    The sampler shuffles the rows, then sorts blocks of up to 50 batches by length, longest first,
    and puts the longest row of all in the first batch: batches pad little, the epoch is no
    curriculum (a block is a random draw), the rows sharing a batch change from epoch to epoch, and
    an out-of-memory error shows in the first step instead of hours into a fold. Our earlier order
    (all rows sorted, batches visited at random) padded less (1 % against 5 %) but learned no better:
    over four out-of-fold comparisons it ended 0.01 to 0.07 worse (docs/speed.md).
    """
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [int(n) for n in lengths]
    if not lengths:  # the sampler cannot order nothing
        return []
    batches_per_chunk = max(1, -(-chunk_size // batch_size))
    chunks: list[list[np.ndarray]] = []
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        order = np.asarray(get_length_grouped_indices(lengths, batch_size, generator=generator), dtype=np.int64)
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        chunks += [batches[i : i + batches_per_chunk] for i in range(0, len(batches), batches_per_chunk)]
    return chunks


def paired_chunks(
    lengths: Sequence[int], batch_size: int, chunk_size: int, epochs: int, seed: int
) -> list[list[np.ndarray]]:
    """Full swap (train.swap_augmentation: pair): `lengths` holds n rows followed by their n swapped
    copies (row i's copy is row n + i). The n rows are ordered as length_grouped_chunks orders them
    in batches of batch_size / 2, and each batch takes the copies of its rows, so that a row and its
    swap share a batch, hence an optimizer step. batch_size must be even."""
    if batch_size % 2:
        raise ValueError(f"swapped pairs need an even batch size, not {batch_size}")
    n = len(lengths) // 2
    if 2 * n != len(lengths):
        raise ValueError(f"{len(lengths)} rows cannot be {n} rows and their swapped copies")
    chunks = length_grouped_chunks(lengths[:n], batch_size // 2, max(1, chunk_size // 2), epochs, seed)
    return [[np.concatenate([batch, batch + n]) for batch in chunk] for chunk in chunks]


def rows_per_batch(width: int, tokens_per_batch: int, max_rows: int) -> int:
    """Rows of `width` tokens that fit a batch of tokens_per_batch padded tokens (at least one)."""
    return max(1, min(max_rows, tokens_per_batch // max(width, 1)))


def token_budget_batches(lengths: Sequence[int], tokens_per_batch: int, max_rows: int) -> list[np.ndarray]:
    """Longest rows first, each batch as many rows as fit in tokens_per_batch padded tokens.

    Longest first makes an out-of-memory error show up in the first batch, not after an hour.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        width = lengths[order[start]]  # the batch's longest row comes first
        rows = rows_per_batch(width, tokens_per_batch, max_rows)
        batches.append(order[start : start + rows])
        start += rows
    return batches


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Tokens a model computes for these batches when each is padded to its longest row."""
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if len(batch))
