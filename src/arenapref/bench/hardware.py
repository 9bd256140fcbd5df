"""What the machine can do and what a forward pass costs, in floating-point operations."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch


def matmul_rate(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 2.0
) -> float:
    """Best sustained FLOP/s of a square matrix multiply: the machine's rate for large products (a
    model's own, narrower layers run slower: dense_layer_rate)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2.0 * size**3 / _best_time(lambda: torch.matmul(a, b), device, seconds)


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


def dense_layer_shapes(model) -> dict[tuple[int, int], int]:
    """(in_features, out_features) of the linear layers inside the decoder blocks, with how many of
    each: the products that make up most of a forward pass's FLOPs (the head, a few rows, is left out)."""
    shapes: dict[tuple[int, int], int] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        in_features, out_features = getattr(module, "in_features", None), getattr(module, "out_features", None)
        if weight is None or in_features is None or out_features is None or ".layers." not in f".{name}":
            continue
        # An adapter's wrapper and factors: its base layer is counted; the factors are merged for
        # inference and rank-wide in training.
        if "lora_" in name or hasattr(module, "base_layer"):
            continue
        shapes[(in_features, out_features)] = shapes.get((in_features, out_features), 0) + 1
    return shapes


def dense_layer_rate(
    shapes: dict[tuple[int, int], int],
    tokens: int,
    device: torch.device,
    dtype: torch.dtype,
    seconds: float = 2.0,
) -> float:
    """FLOP/s of the model's own dense layers run as bare matrix products on `tokens` rows of
    activations: a forward pass can go no faster than this on the machine, whatever batches,
    kernels or framework surround it (attention and the rest only add time). Each distinct shape is
    timed, best of its repeats, and weighted by how many layers have it."""
    flops = total = 0.0
    for (in_features, out_features), count in sorted(shapes.items()):
        x = torch.randn(tokens, in_features, device=device, dtype=dtype)
        w = torch.randn(out_features, in_features, device=device, dtype=dtype)
        best = _best_time(lambda x=x, w=w: torch.nn.functional.linear(x, w), device, seconds / len(shapes))
        flops += count * 2.0 * tokens * in_features * out_features
        total += count * best
    return flops / total if total > 0 else 0.0


def _best_time(call, device: torch.device, seconds: float) -> float:
    call()  # warm-up: thread pool, kernel choice, caches
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    repeats = 0
    while repeats < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        repeats += 1
    return best
