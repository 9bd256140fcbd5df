"""What the machine can do and what a forward pass costs, in floating-point operations."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Dense tensor-core peaks in TFLOP/s from the vendors' data sheets, without sparsity: bf16, or fp16
# for GPUs without bf16 (T4, V100). Matched against torch's device name in order, so that an H100
# PCIe is not taken for the SXM part, nor an A10G, A100 or L40 for an A10 or L4; a name matching
# none (an H100 NVL, an A10G) gets no rated figure rather than a neighbour's.
RATED_DENSE_TFLOPS = (
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\b(SXM|HBM3)", 989.0),
    (r"\bH200\b(?!.*\bNVL\b)", 989.0),
    (r"\bA100\b", 312.0),
    (r"\bRTX 4090\b", 165.0),
    (r"\bA10\b", 125.0),
    (r"\bL4\b", 121.0),
    (r"\bV100\b", 125.0),
    (r"\bT4\b", 65.0),
)

# Square sizes the ceiling is sought over. A GPU's rate still climbs past 4096 (an H200 at 4096
# measured about three quarters of its 8192 rate), so the largest products are tried; a CPU's
# levels off by 1024-2048, where each product already takes a good fraction of a second.
CEILING_SIZES = {"cuda": (2048, 4096, 8192, 16384), "cpu": (1024, 2048)}


def rated_dense_tflops(device_name: str) -> float | None:
    """The data-sheet dense bf16 (fp16 without bf16) peak of a GPU by its name; None when unknown."""
    for pattern, tflops in RATED_DENSE_TFLOPS:
        if re.search(pattern, device_name):
            return tflops
    return None


@dataclass(frozen=True)
class MatmulCeiling:
    """The best matrix-multiply rate measured on a device in one dtype, beside the device's rated peak."""

    device_name: str
    dtype: str
    flops_per_s: float  # best over the sizes tried
    size: int  # the square size where it peaked
    rates_by_size: dict[int, float]
    rated_flops_per_s: float | None  # None: the device is not in RATED_DENSE_TFLOPS (or is a CPU)

    @property
    def over_rated(self) -> float | None:
        return self.flops_per_s / self.rated_flops_per_s if self.rated_flops_per_s else None

    def describe(self) -> str:
        measured = f"{self.flops_per_s / 1e12:.1f} TFLOP/s measured ({self.dtype}, best at {self.size}^3)"
        if self.rated_flops_per_s is None:
            return f"{measured}; no rated figure for {self.device_name}"
        return (
            f"{measured}, {self.over_rated:.2f} of the {self.rated_flops_per_s / 1e12:.0f} TFLOP/s rated "
            f"for {self.device_name}"
        )

    def as_dict(self) -> dict:
        return {
            "device": self.device_name,
            "dtype": self.dtype,
            "tflops": round(self.flops_per_s / 1e12, 3),
            "size": self.size,
            "tflops_by_size": {str(n): round(rate / 1e12, 3) for n, rate in self.rates_by_size.items()},
            "rated_tflops": None if self.rated_flops_per_s is None else self.rated_flops_per_s / 1e12,
            "over_rated": None if self.over_rated is None else round(self.over_rated, 3),
        }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).name
    return device.type


def measure_matmul_ceiling(
    device: torch.device, dtype: torch.dtype, seconds: float = 2.0, sizes: Sequence[int] | None = None
) -> MatmulCeiling:
    """The rate every "fraction of the matmul rate" is taken against: square products at each size
    (warmed up, best of several timed repeats, `seconds` shared among the sizes), the best rate of
    all. Only CUDA devices get a rated peak; a size that does not fit the device's memory is skipped."""
    sizes = tuple(sizes or CEILING_SIZES["cuda" if device.type == "cuda" else "cpu"])
    rates: dict[int, float] = {}
    for size in sizes:
        try:
            rates[size] = matmul_rate(device, dtype, size, seconds / len(sizes))
        except torch.OutOfMemoryError:
            if not rates:
                raise
            torch.cuda.empty_cache()
            break  # larger sizes would not fit either
    best = max(rates, key=rates.get)
    name = device_name(device)
    rated = rated_dense_tflops(name) if device.type == "cuda" else None
    return MatmulCeiling(
        device_name=name,
        dtype=str(dtype).removeprefix("torch."),
        flops_per_s=rates[best],
        size=best,
        rates_by_size=rates,
        rated_flops_per_s=None if rated is None else rated * 1e12,
    )


def matmul_rate(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 2.0
) -> float:
    """Best sustained FLOP/s of a square matrix multiply of one size (the ceiling over sizes:
    measure_matmul_ceiling; a model's own, narrower layers run slower: dense_layer_rate)."""
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
