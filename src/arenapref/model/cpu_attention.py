"""Attention for inference on a CPU, scored a slice at a time so the scores stay in cache.

transformers' eager attention holds every head's L x L scores for the whole batch at once (8 rows
of 256 tokens at 9 heads: 4.7 M scores, 19 MB in the fp32 softmax) and passes over them five times
(scale, mask, fp32 copy, softmax, bf16 copy). Here a slice of rows, or for long rows a block of
queries, is scored, masked, softmaxed and multiplied by the values while it is in cache, and a
query block scores only the keys up to its last position (the causal mask hides the rest; where
causality alone masks, only a block's own keys get the triangle). The arithmetic is eager's: bf16
products, an fp32 softmax rounded back, the same additive mask where there is padding; only the
order of the work changes. Key/value heads are shared by their query group without being copied.

On a 2-core EPYC one layer's attention took 2.3 -> 2.0 ms at 16 x 128 tokens, 8.4-13 -> 3.1 ms at
8 x 256 and 92-98 -> 10 ms at 2 x 1,024; in the whole predict loop over real rows (256 tokens) the
attention's share fell from 17 % to 12 % of the time.

CUDA keeps SDPA's fused kernels; training keeps SDPA (it needs the attention probabilities' backward).
"""

from __future__ import annotations

import torch

NAME = "sliced_cpu"
# fp32 scores a slice may hold: 4 MiB fits the caches of a server core pair with room for the
# slice's queries, keys and values (0.5 to 4 MiB ran within a few percent of each other on a
# 2-core EPYC; 16 MiB and more, as slow as the whole batch at once).
SLICE_BYTES = 4 << 20
# Queries a block scores at most: a causal block of 64 skips the keys after it (3/8 of the
# products and softmax at 256 tokens) at a few dozen more small products per layer.
QUERY_BLOCK = 64
# Architectures whose attention is plain causal softmax attention (no logit soft-capping, no sliding window).
SUPPORTED_MODEL_TYPES = ("llama",)


def supports(config) -> bool:
    return getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES


def register() -> None:
    """Make NAME an attention implementation transformers models can be set to (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, sliced_attention)
    AttentionMaskInterface.register(NAME, causal_or_additive_mask)


def slice_shape(heads: int, queries: int, keys: int) -> tuple[int, int]:
    """(rows, queries) a slice scores: blocks of QUERY_BLOCK queries, as many rows of them as fit
    in SLICE_BYTES of fp32 scores; fewer queries where one row's block does not fit (at least 16,
    so the products stay matrix-shaped)."""
    block = min(queries, QUERY_BLOCK)
    block_bytes = heads * block * keys * 4
    if block_bytes <= SLICE_BYTES:
        return max(1, SLICE_BYTES // block_bytes), block
    return 1, min(block, max(16, SLICE_BYTES // (heads * keys * 4)))


def largest_slice(rows: int, heads: int, length: int) -> int:
    """Scores the largest slice of a batch of `rows` x `length` tokens holds (for the memory plan)."""
    rows_per_slice, block = slice_shape(heads, length, length)
    return min(rows, rows_per_slice) * heads * block * length


def sliced_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Softmax attention of `query` (batch, heads, Lq, d) over `key`/`value` (batch, kv heads, Lk, d).

    `attention_mask`: eager's additive mask (batch, 1, Lq, Lk), or None where causality alone
    masks (queries aligned to the last keys); then each block adds the causal triangle to its
    last keys only. Returns (batch, Lq, heads, d), as transformers expects of an attention function.
    """
    if module.training and dropout > 0:
        raise RuntimeError("sliced CPU attention is for inference; training uses SDPA")
    batch, heads, length, head_dim = query.shape
    kv_heads, kv_length = key.shape[1], key.shape[2]
    group = heads // kv_heads
    dtype, device = query.dtype, query.device
    causal = getattr(module, "is_causal", True)
    offset = kv_length - length  # the queries are the last `length` positions
    # Queries laid out (batch, kv head, position, group member, d) and pre-scaled in one pass: a
    # block of positions of one kv head is then one contiguous matrix whose rows all use that kv
    # head's keys, so a group shares its keys and values by a plain batched product.
    queries = torch.empty(batch, kv_heads, length, group, head_dim, dtype=dtype, device=device)
    torch.mul(query.view(batch, kv_heads, group, length, head_dim).transpose(2, 3), scaling, out=queries)
    keys = key.reshape(batch * kv_heads, kv_length, head_dim)
    values = value.reshape(batch * kv_heads, kv_length, head_dim)
    out = torch.empty(batch, length, kv_heads, group, head_dim, dtype=dtype, device=device)
    rows, block = slice_shape(heads, length, kv_length)
    for row in range(0, batch, rows):
        row_end = min(batch, row + rows)
        n, kv = row_end - row, slice(row * kv_heads, row_end * kv_heads)
        for start in range(0, length, block):
            stop = min(length, start + block)
            m = stop - start
            seen = stop + offset if causal else kv_length  # keys after a block's last query are masked anyway
            scores = torch.bmm(
                queries[row:row_end, :, start:stop].reshape(n * kv_heads, m * group, head_dim),
                keys[kv, :seen].transpose(1, 2),
            ).view(n, kv_heads, m, group, seen)
            if attention_mask is not None:
                scores.add_(attention_mask[row:row_end, :, start:stop, None, :seen])
            elif causal:
                scores[..., seen - m :].add_(_upper_triangle(m, dtype, device))
            weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)
            block_out = torch.bmm(weights.view(n * kv_heads, m * group, seen), values[kv, :seen])
            out[row:row_end, start:stop].copy_(block_out.view(n, kv_heads, m, group, head_dim).transpose(1, 2))
            del scores, weights, block_out  # before the next slice's scores are allocated, not after
    return out.view(batch, length, heads, head_dim), None


def _upper_triangle(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The additive causal mask of a block's own keys, shaped (queries, 1, keys) to broadcast over the group."""
    return torch.full((size, size), torch.finfo(dtype).min, dtype=dtype, device=device).triu(1)[:, None, :]


def causal_or_additive_mask(*, dtype: torch.dtype = torch.float32, **kwargs) -> torch.Tensor | None:
    """The mask transformers builds for this attention: None where causality alone masks (SDPA's
    rule: no padding, as many queries as keys), else eager's additive mask (0 or the dtype's minimum)."""
    from transformers.masking_utils import sdpa_mask

    mask = sdpa_mask(**kwargs)
    if mask is None:
        return None
    return torch.where(mask, torch.zeros((), device=mask.device, dtype=dtype), torch.finfo(dtype).min)
