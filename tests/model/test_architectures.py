"""Other decoders than Llama: the attention each gets per device, Gemma-2's soft-capping switch,
and reward-model checkpoints whose one-output head is replaced by a fresh 3-way one."""

from __future__ import annotations

import logging

import pytest
import torch

from arenapref.config import RunConfig
from arenapref.errors import ConfigError
from arenapref.model.modeling import (
    Float32Linear,
    choose_attention,
    concrete_model_class,
    load_base_model,
    supported_attention,
)

# What `auto` picks per architecture: sdpa wherever the classifier class allows it; Gemma-2's refuses
# sdpa (soft-capping), so flex attention on CUDA and eager on a CPU, where flex is not compiled.
EXPECTED_AUTO = {
    "llama": {"cpu": "sdpa", "cuda": "sdpa"},
    "gemma2": {"cpu": "eager", "cuda": "flex_attention"},
    "qwen2": {"cpu": "sdpa", "cuda": "sdpa"},
    "mistral": {"cpu": "sdpa", "cuda": "sdpa"},
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tiny_llama import ARCHITECTURES, build_tiny

    return {name: build_tiny(tmp_path_factory.mktemp(f"tiny-{name}"), name) for name in ARCHITECTURES}


class _TokenizerIds:
    """What tiny_config reads of a tokenizer: a config alone needs no tokenizer files."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 3

    def __len__(self) -> int:
        return 400


def _classifier_class(architecture: str):
    from tiny_llama import tiny_config
    from transformers import AutoModelForSequenceClassification

    return concrete_model_class(AutoModelForSequenceClassification, tiny_config(architecture, _TokenizerIds()))


@pytest.mark.parametrize("architecture", sorted(EXPECTED_AUTO))
@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_auto_attention_per_architecture_and_device(architecture, device_type):
    model_class = _classifier_class(architecture)
    choice, why = choose_attention("auto", supported_attention(model_class), device_type, model_class.__name__)
    assert choice == EXPECTED_AUTO[architecture][device_type]
    assert model_class.__name__ in why


def test_an_attention_the_class_cannot_run_is_a_one_line_error():
    gemma = _classifier_class("gemma2")
    with pytest.raises(ConfigError, match=r"^model\.attn_implementation is 'sdpa' but Gemma2ForSequenceClassification"):
        choose_attention("sdpa", supported_attention(gemma), "cuda", gemma.__name__)
    # An explicit choice the class supports is obeyed on any device.
    assert choose_attention("eager", supported_attention(gemma), "cuda", gemma.__name__)[0] == "eager"


@pytest.mark.parametrize("architecture", sorted(EXPECTED_AUTO))
def test_the_loaded_model_runs_the_chosen_attention(tiny_models, architecture, caplog):
    run = RunConfig.from_config({})
    with caplog.at_level(logging.INFO, logger="arenapref.model.modeling"):
        model = load_base_model(tiny_models[architecture], run.model, torch.device("cpu"), torch.float32, 3)
    expected = EXPECTED_AUTO[architecture]["cpu"]
    assert model.config._attn_implementation == expected
    assert f"attention: {expected} (" in caplog.text
    assert type(model.score) is Float32Linear
    explicit = RunConfig.from_config({"model": {"attn_implementation": "eager"}})
    model = load_base_model(tiny_models[architecture], explicit.model, torch.device("cpu"), torch.float32, 3)
    assert model.config._attn_implementation == "eager"


def test_softcapping_off_reaches_the_model(tiny_models, caplog):
    on = RunConfig.from_config({})
    off = RunConfig.from_config({"model": {"attn_softcapping": False}})
    capped = load_base_model(tiny_models["gemma2"], on.model, torch.device("cpu"), torch.float32, 3)
    assert capped.config.attn_logit_softcapping == 50.0
    with caplog.at_level(logging.INFO, logger="arenapref.model.modeling"):
        uncapped = load_base_model(tiny_models["gemma2"], off.model, torch.device("cpu"), torch.float32, 3)
    assert uncapped.config.attn_logit_softcapping is None
    assert all(layer.self_attn.attn_logit_softcapping is None for layer in uncapped.model.layers)
    assert "soft-capping turned off" in caplog.text
    # The same weights score differently once the cap is gone (random scores exceed 50 rarely, so
    # the inputs are scaled up until they do).
    uncapped.load_state_dict(capped.state_dict())
    for layer in (*capped.model.layers, *uncapped.model.layers):
        layer.self_attn.q_proj.weight.data.mul_(60)
    ids = torch.randint(5, 300, (2, 48))
    with torch.no_grad():
        assert not torch.allclose(capped(input_ids=ids).logits, uncapped(input_ids=ids).logits, atol=1e-4)
    # Architectures without soft-capping ignore the setting and say nothing.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="arenapref.model.modeling"):
        load_base_model(tiny_models["mistral"], off.model, torch.device("cpu"), torch.float32, 3)
    assert "soft-capping" not in caplog.text


def test_a_reward_model_gets_a_fresh_three_way_head(tiny_models, tmp_path, caplog):
    from transformers import AutoModelForSequenceClassification

    reward_dir = tmp_path / "reward"
    torch.manual_seed(1)
    reward = AutoModelForSequenceClassification.from_pretrained(tiny_models["llama"], num_labels=1)
    reward.save_pretrained(reward_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (reward_dir / name).write_bytes((tiny_models["llama"] / name).read_bytes())
    run = RunConfig.from_config({})
    with caplog.at_level(logging.INFO, logger="arenapref.model.modeling"):
        model = load_base_model(reward_dir, run.model, torch.device("cpu"), torch.float32, 3)
    assert "a classification head of 1 outputs (a reward model): it gets a fresh 3-way head" in caplog.text
    assert model.config.num_labels == 3 and model.score.weight.shape == (3, 64)
    assert type(model.score) is Float32Linear
    # The body's weights are the reward model's, not fresh ones.
    torch.testing.assert_close(
        model.model.layers[0].self_attn.q_proj.weight, reward.model.layers[0].self_attn.q_proj.weight
    )
    logits = model(input_ids=torch.randint(5, 300, (2, 16))).logits
    assert logits.shape == (2, 3) and logits.dtype == torch.float32
