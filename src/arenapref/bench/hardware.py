"""What the machine can do and what a forward pass costs, in floating-point operations."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch


def matmul_rate(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 2.0
) -> float:
    """Best sustained FLOP/s of a square matrix multiply: the practical ceiling for dense layers."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    flops = 2.0 * size**3
    best = float("inf")
    torch.matmul(a, b)  # warm-up: thread pool, kernels, caches
    deadline = time.perf_counter() + seconds
    repeats = 0
    while repeats < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        repeats += 1
    return flops / best


def non_embedding_parameters(model) -> int:
    """Parameters that cost 2 FLOPs per token in a forward pass (token embeddings are a lookup).

    Counted as the logical size: 4-bit weights packed two to a byte count once per weight.
    """
    total = 0
    for name, param in model.named_parameters():
        if "embed_tokens" in name:
            continue
        numel = param.numel()
        if getattr(param, "quant_state", None) is not None:  # bitsandbytes Params4bit
            numel = param.quant_state.shape.numel()
        total += numel
    return total


def forward_flops(lengths: Sequence[int], params: int, num_layers: int, attention_width: int) -> float:
    """Forward-pass FLOPs over sequences of the given (real) lengths.

    Dense layers: 2 x parameters per token. Attention scores and the weighted sum: 4 x width x L^2
    per layer and sequence (the usual convention, as in the PaLM paper's accounting, which
    counts the full L x L product even though a causal mask makes half of it unneeded).
    """
    tokens = sum(lengths)
    squares = sum(n * n for n in lengths)
    return 2.0 * params * tokens + 4.0 * num_layers * attention_width * squares


def training_flops(
    lengths: Sequence[int],
    params: int,
    num_layers: int,
    attention_width: int,
    backward_share: float,
    recompute_share: float = 0.0,
) -> float:
    """FLOPs of a LoRA training pass: the forward, then the backward pass through the share of the
    layers it reaches (the top down to the lowest adapted layer). Frozen weights take no weight
    gradients, so the backward pass costs about one forward of those layers (activation gradients;
    the adapters' own are negligible); gradient checkpointing recomputes `recompute_share` once more."""
    forward = forward_flops(lengths, params, num_layers, attention_width)
    return forward * (1.0 + backward_share + recompute_share)
