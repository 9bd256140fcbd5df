"""The model as inference computes it: adapter merged into unquantized weights, linear layers
stored in the arithmetic's dtype; the probabilities stay those of the model as trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arenapref.config import RunConfig


def _ids(n_rows: int = 19, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [list(rng.integers(5, 300, size=int(n))) for n in rng.integers(5, 60, size=n_rows)]


@pytest.mark.parametrize("head", ["classifier", "sft"])
def test_merged_model_predicts_what_the_adapter_does(tiny_checkpoint, tiny_tokenizer, tmp_path, head):
    from arenapref.bench.folds import random_adapters
    from arenapref.evaluate.predict import predict_probabilities
    from arenapref.model.heads import make_head
    from arenapref.model.modeling import for_inference, load_base_model, load_trained_adapter

    run = RunConfig.from_config({"model": {"head": head}})
    adapter = random_adapters(tiny_checkpoint, run, ["fold0"], tmp_path)["fold0"]
    pad, cpu, ids = tiny_tokenizer.pad_token_id, torch.device("cpu"), _ids()
    model_head = make_head(head, tiny_tokenizer)

    def adapted():
        return load_trained_adapter(load_base_model(tiny_checkpoint, run.model, cpu, torch.float32, pad), adapter)

    def probs(model, dtype):
        return predict_probabilities(model, ids, cpu, dtype, pad, 256, 8, head=model_head)

    plain = adapted()
    base_only = load_base_model(tiny_checkpoint, run.model, cpu, torch.float32, pad)
    merged = for_inference(adapted(), torch.float32)
    assert not any("lora" in name for name, _ in merged.named_parameters())  # the adapter is in the weights
    np.testing.assert_allclose(probs(merged, torch.float32), probs(plain, torch.float32), atol=1e-5)
    # The adapter matters on these rows, so equality above is not the base model's.
    assert np.abs(probs(base_only, torch.float32) - probs(plain, torch.float32)).max() > 1e-3

    # In bf16 every weight but the classification layer is stored in bf16 (the residual stream runs
    # in it, as on CUDA) and attention is computed in slices on a CPU: within bf16's rounding of the
    # adapter under autocast (8 significant bits, over a residual stream in bf16).
    low = for_inference(adapted(), torch.bfloat16)
    kept_fp32 = {name for name, p in low.named_parameters() if p.dtype != torch.bfloat16}
    assert kept_fp32 == ({"score.weight"} if head == "classifier" else set())
    assert low.config._attn_implementation == "sliced_cpu"
    np.testing.assert_allclose(probs(low, torch.bfloat16), probs(plain, torch.bfloat16), atol=2e-2)


def test_quantized_base_keeps_its_adapter_apart():
    from peft import LoraConfig, get_peft_model

    from arenapref.model.modeling import for_inference, is_quantized

    class Linear4bit(torch.nn.Linear):  # stands in for bitsandbytes' layer, which needs CUDA here
        pass

    base = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    base[0].__class__ = Linear4bit
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["2"]))
    assert is_quantized(model)
    kept = for_inference(model, torch.float32)
    assert any("lora_A" in name for name, _ in kept.named_parameters())


def test_decoder_mask_is_left_out_only_for_right_padded_batches():
    from arenapref.model.batching import pad_batch
    from arenapref.model.heads import decoder_mask

    _ids, right = pad_batch([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert decoder_mask(right) is None
    left = right.flip(1)  # padding on the left: the causal mask alone would let rows attend to it
    assert decoder_mask(left) is left
    holed = torch.tensor([[1, 0, 1]])
    assert decoder_mask(holed) is holed


@pytest.mark.parametrize("head", ["classifier", "sft"])
def test_a_rows_prediction_does_not_depend_on_its_batch(tiny_checkpoint, tiny_tokenizer, head, monkeypatch):
    """Batched right-padded rows run without a padding mask: each row's probabilities must be those
    it gets alone (no padding at all), and those of the model told about the padding."""
    import arenapref.model.heads as heads
    from arenapref.evaluate.predict import predict_probabilities
    from arenapref.model.modeling import load_base_model

    run = RunConfig.from_config({"model": {"head": head}})
    pad, cpu, ids = tiny_tokenizer.pad_token_id, torch.device("cpu"), _ids(seed=3)
    torch.manual_seed(0)
    model = load_base_model(tiny_checkpoint, run.model, cpu, torch.float32, pad)
    model_head = heads.make_head(head, tiny_tokenizer)
    batched = predict_probabilities(model, ids, cpu, torch.float32, pad, 256, 8, head=model_head)
    alone = predict_probabilities(model, ids, cpu, torch.float32, pad, 1, 1, head=model_head)
    assert len({len(x) for x in ids}) > 5  # rows of many lengths, so batches hold padding
    np.testing.assert_allclose(batched, alone, atol=1e-5)

    # The same model told about the padding: what the rows computed before the mask was left out.
    monkeypatch.setattr(heads, "decoder_mask", lambda mask: mask)
    masked = predict_probabilities(model, ids, cpu, torch.float32, pad, 256, 8, head=model_head)
    np.testing.assert_allclose(batched, masked, atol=1e-5)
