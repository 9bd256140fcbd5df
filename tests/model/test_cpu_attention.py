"""CPU inference attention computed a slice at a time: the same numbers as transformers' eager
attention, for causal rows, padding on either side, shared key/value heads and query blocks."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from arenapref.config import RunConfig
from arenapref.model import cpu_attention


def _eager(query, key, value, mask):
    from transformers.models.llama.modeling_llama import eager_attention_forward

    module = types.SimpleNamespace(num_key_value_groups=query.shape[1] // key.shape[1], training=False)
    return eager_attention_forward(module, query, key, value, mask, scaling=query.shape[-1] ** -0.5)[0]


def _sliced(query, key, value, mask):
    module = types.SimpleNamespace(is_causal=True, training=False)
    return cpu_attention.sliced_attention(module, query, key, value, mask, scaling=query.shape[-1] ** -0.5)[0]


def _qkv(batch: int, length: int, dtype: torch.dtype, kv_length: int | None = None, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    kv_length = kv_length or length

    def draw(*shape):
        return torch.randn(*shape, generator=generator).to(dtype)

    # 6 query heads sharing 2 key/value heads, as grouped-query attention does.
    return draw(batch, 6, length, 16), draw(batch, 2, kv_length, 16), draw(batch, 2, kv_length, 16)


def _additive(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(visible, torch.zeros((), dtype=dtype), torch.finfo(dtype).min)[:, None]


def _causal(batch: int, length: int, dtype: torch.dtype, padding: torch.Tensor | None = None) -> torch.Tensor:
    visible = torch.ones(length, length, dtype=torch.bool).tril().expand(batch, length, length)
    if padding is not None:  # padding: (batch, length), True on real tokens
        visible = visible & padding[:, None, :]
    return _additive(visible, dtype)


@pytest.fixture(params=["whole rows", "query blocks", "rows and blocks"])
def slicing(request, monkeypatch):
    """Slices of whole rows, of 16-query blocks within one row, and of several rows of blocks."""
    size = {"whole rows": (4 << 20, 64), "query blocks": (6 * 16 * 50 * 4, 16), "rows and blocks": (1 << 20, 16)}
    slice_bytes, block = size[request.param]
    monkeypatch.setattr(cpu_attention, "SLICE_BYTES", slice_bytes)
    monkeypatch.setattr(cpu_attention, "QUERY_BLOCK", block)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_causal_rows_without_a_mask_match_eager_with_one(slicing, dtype):
    query, key, value = _qkv(3, 50, dtype)
    expected = _eager(query, key, value, _causal(3, 50, dtype))
    got = _sliced(query, key, value, None)
    assert got.shape == expected.shape == (3, 50, 6, 16)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2  # bf16: a different order of the same roundings
    torch.testing.assert_close(got.float(), expected.float(), atol=tolerance, rtol=0)


def test_slices_hold_whole_rows_until_a_row_outgrows_the_budget(monkeypatch):
    monkeypatch.setattr(cpu_attention, "SLICE_BYTES", 4 << 20)
    monkeypatch.setattr(cpu_attention, "QUERY_BLOCK", 64)
    assert cpu_attention.slice_shape(9, 40, 40) == ((4 << 20) // (9 * 40 * 40 * 4), 40)  # short rows: one block each
    assert cpu_attention.slice_shape(9, 256, 256) == (7, 64)  # 7 rows of 64-query blocks: 4.1 of 4.2 MB
    assert cpu_attention.slice_shape(9, 4096, 4096) == (1, 28)  # one row, as many queries as fit
    assert cpu_attention.slice_shape(32, 32768, 32768) == (1, 16)  # never under 16 queries


@pytest.mark.parametrize("side", ["left", "right", "holes"])
def test_padding_in_the_mask_matches_eager(slicing, side):
    batch, length = 3, 50
    real = torch.ones(batch, length, dtype=torch.bool)
    if side == "left":
        real[1, :17] = real[2, :40] = False
    elif side == "right":
        real[1, 33:] = real[2, 10:] = False
    else:
        real[0, 5:9] = real[2, 20:45] = False
    mask = _causal(batch, length, torch.float32, real)
    query, key, value = _qkv(batch, length, torch.float32, seed=1)
    expected, got = _eager(query, key, value, mask), _sliced(query, key, value, mask)
    # A query that sees no real token (left padding) is padding itself and never scored: eager
    # averages all values there, a causal block only the keys up to it.
    sees_something = (mask[:, 0] == 0).any(-1)
    assert sees_something.sum() < batch * length if side == "left" else sees_something.all()
    torch.testing.assert_close(got[sees_something], expected[sees_something], atol=1e-6, rtol=0)


def test_fewer_queries_than_keys_are_the_last_positions():
    query, key, value = _qkv(2, 5, torch.float32, kv_length=23, seed=2)
    visible = torch.ones(5, 23, dtype=torch.bool).tril(diagonal=23 - 5).expand(2, 5, 23)
    expected = _eager(query, key, value, _additive(visible, torch.float32))
    torch.testing.assert_close(_sliced(query, key, value, None), expected, atol=1e-6, rtol=0)


def test_the_mask_is_left_out_only_where_causality_alone_masks():
    no_padding = torch.ones(2, 7, dtype=torch.bool)
    arguments = {"batch_size": 2, "q_length": 7, "kv_length": 7, "dtype": torch.bfloat16}
    assert cpu_attention.causal_or_additive_mask(attention_mask=no_padding, **arguments) is None
    padded = no_padding.clone()
    padded[1, :3] = False
    mask = cpu_attention.causal_or_additive_mask(attention_mask=padded, **arguments)
    assert mask.shape == (2, 1, 7, 7) and mask.dtype == torch.bfloat16
    torch.testing.assert_close(mask, _causal(2, 7, torch.bfloat16, padded))


def test_training_with_dropout_is_refused():
    query, key, value = _qkv(1, 4, torch.float32)
    module = types.SimpleNamespace(is_causal=True, training=True)
    with pytest.raises(RuntimeError, match="inference"):
        cpu_attention.sliced_attention(module, query, key, value, None, scaling=0.25, dropout=0.1)


@pytest.mark.parametrize("head", ["classifier", "sft"])
def test_the_prepared_model_predicts_what_eager_attention_does(
    tiny_checkpoint, tiny_tokenizer, slicing, head, monkeypatch
):
    """A Llama prepared for CPU inference attends in slices; its probabilities are eager's, on
    right-padded batches (no mask) and on batches told about their padding."""
    import arenapref.model.heads as heads
    from arenapref.evaluate.predict import predict_probabilities
    from arenapref.model.modeling import for_inference, load_base_model

    run = RunConfig.from_config({"model": {"head": head}})
    pad, cpu = tiny_tokenizer.pad_token_id, torch.device("cpu")
    rng = np.random.default_rng(4)
    ids = [list(rng.integers(5, 300, size=int(n))) for n in rng.integers(3, 90, size=17)]
    torch.manual_seed(0)
    model = for_inference(load_base_model(tiny_checkpoint, run.model, cpu, torch.float32, pad), torch.float32)
    assert model.config._attn_implementation == cpu_attention.NAME
    model_head = heads.make_head(head, tiny_tokenizer)

    def probs():
        return predict_probabilities(model, ids, cpu, torch.float32, pad, 512, 8, head=model_head)

    sliced = probs()
    model.set_attn_implementation("eager")
    np.testing.assert_allclose(sliced, probs(), atol=1e-6)
    model.set_attn_implementation(cpu_attention.NAME)
    monkeypatch.setattr(heads, "decoder_mask", lambda mask: mask)  # the padding mask given as well
    np.testing.assert_allclose(probs(), sliced, atol=1e-6)


def test_other_architectures_keep_eager_attention():
    assert cpu_attention.supports(types.SimpleNamespace(model_type="llama"))
    # Gemma 2 soft-caps its attention logits, Mistral may slide a window: eager attention knows how.
    assert not cpu_attention.supports(types.SimpleNamespace(model_type="gemma2"))
    assert not cpu_attention.supports(types.SimpleNamespace(model_type="mistral"))
