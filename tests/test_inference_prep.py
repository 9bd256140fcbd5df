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
    from arenapref.heads import make_head
    from arenapref.modeling import for_inference, load_base_model, load_trained_adapter
    from arenapref.predict import predict_probabilities

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

    # In bf16 the weights are stored as autocast would round them: the same result as the adapter
    # under autocast, up to the merge's own rounding (bf16 has 8 significant bits).
    low = for_inference(adapted(), torch.bfloat16)
    linear = [m for m in low.modules() if type(m) is torch.nn.Linear]
    output = low.get_output_embeddings()
    assert all(m.weight.dtype == torch.bfloat16 for m in linear if m is not output)
    assert output is None or output.weight.dtype == torch.float32  # tied to the input embeddings
    np.testing.assert_allclose(probs(low, torch.bfloat16), probs(plain, torch.bfloat16), atol=2e-2)


def test_quantized_base_keeps_its_adapter_apart():
    from peft import LoraConfig, get_peft_model

    from arenapref.modeling import for_inference, is_quantized

    class Linear4bit(torch.nn.Linear):  # stands in for bitsandbytes' layer, which needs CUDA here
        pass

    base = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    base[0].__class__ = Linear4bit
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["2"]))
    assert is_quantized(model)
    kept = for_inference(model, torch.float32)
    assert any("lora_A" in name for name, _ in kept.named_parameters())
