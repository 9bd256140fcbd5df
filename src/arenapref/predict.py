"""Inference: length-sorted, token-budget batches under torch.inference_mode, in `dtype` arithmetic
(autocast; on a CPU with native bf16 that doubles the matmul rate)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from arenapref.batching import pad_batch, token_budget_batches


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
    probs = np.zeros((len(input_ids), 3), dtype=np.float64)
    if not input_ids:
        return probs
    lengths = [len(x) for x in input_ids]
    batches = token_budget_batches(lengths, tokens_per_batch, max_batch_rows)
    use_autocast = dtype != torch.float32
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, unit="batch", file=sys.stderr,
                          mininterval=1.0 if sys.stderr.isatty() else 15.0):
            ids, mask = pad_batch([input_ids[i] for i in batch], pad_id)
            with torch.autocast(device.type, dtype=dtype, enabled=use_autocast):
                if head is None:
                    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                else:
                    logits = head.class_logits(model, ids.to(device), mask.to(device))
            probs[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probs
