"""Inference: length-sorted, token-budget batches under torch.inference_mode, in `dtype` arithmetic
(autocast; on a CPU with native bf16 that doubles the matmul rate)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from arenapref.model.batching import pad_batch, token_budget_batches


def batched_probabilities(
    logits_of: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    names: Sequence[str],
    input_ids: Sequence[Sequence[int]],
    device: torch.device,
    dtype: torch.dtype,
    pad_id: int,
    tokens_per_batch: int,
    max_batch_rows: int,
    desc: str = "predict",
    on_batch: Callable[[int, float], None] | None = None,
) -> dict[str, np.ndarray]:
    """Class probabilities (A, B, tie) per row, in input order, for each of `names`: `logits_of(ids,
    mask)` gives every name's three logits for a padded batch. `on_batch(rows_done, seconds)`
    is told after each batch."""
    probs = {name: np.zeros((len(input_ids), 3), dtype=np.float64) for name in names}
    if not input_ids:
        return probs
    lengths = [len(x) for x in input_ids]
    batches = token_budget_batches(lengths, tokens_per_batch, max_batch_rows)
    use_autocast = dtype != torch.float32
    started, done = time.perf_counter(), 0
    with torch.inference_mode():
        for batch in tqdm(
            batches, desc=desc, unit="batch", file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 15.0
        ):
            ids, mask = pad_batch([input_ids[i] for i in batch], pad_id)
            with torch.autocast(device.type, dtype=dtype, enabled=use_autocast):
                logits = logits_of(ids.to(device), mask.to(device))
            for name, values in logits.items():
                probs[name][batch] = torch.softmax(values.float(), dim=-1).cpu().numpy()
            done += len(batch)
            if on_batch is not None:
                on_batch(done, time.perf_counter() - started)
    return probs


def predict_probabilities(
    model,
    input_ids: Sequence[Sequence[int]],
    device: torch.device,
    dtype: torch.dtype,
    pad_id: int,
    tokens_per_batch: int,
    max_batch_rows: int,
    desc: str = "predict",
    head=None,
) -> np.ndarray:
    """Class probabilities (A, B, tie) per row, in input order; `head` (default: the classifier)
    turns a batch into three class logits."""
    if head is None:
        from arenapref.model.heads import ClassifierHead

        head = ClassifierHead()
    model.eval()
    probs = batched_probabilities(
        lambda ids, mask: {"model": head.class_logits(model, ids, mask)},
        ["model"],
        input_ids,
        device,
        dtype,
        pad_id,
        tokens_per_batch,
        max_batch_rows,
        desc,
    )
    return probs["model"]
