"""The CUDA path's choices, checked on a CPU: precision by compute capability (faked), the
key-value cache off, fp32 logits, 4-bit layers in the run's dtype, and gradient checkpointing of
the adapted layers that changes memory but not gradients."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from arenapref.config import RunConfig
from arenapref.errors import ConfigError
from arenapref.model.modeling import (
    attach_new_adapter,
    compute_dtype,
    enable_gradient_checkpointing,
    inference_dtype,
    load_base_model,
    lora_layer_indices,
    needs_grad_scaler,
    resolve_quantization,
)

CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((6, 0), torch.float16),  # P100
        ((7, 0), torch.float16),  # V100
        ((7, 5), torch.float16),  # T4, the Kaggle GPUs
        ((8, 0), torch.bfloat16),  # A100
        ((8, 6), torch.bfloat16),  # A10, RTX 30xx
        ((9, 0), torch.bfloat16),  # H100
    ],
)
def test_auto_precision_follows_the_compute_capability(monkeypatch, capability, expected):
    # torch.cuda.is_bf16_supported() says yes on a T4 too (emulation); the capability decides.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    dtype = compute_dtype("auto", CUDA, "nf4")
    assert dtype == expected
    assert needs_grad_scaler(dtype) == (expected == torch.float16)
    assert inference_dtype("auto", CUDA, dtype, "nf4") == expected

    from arenapref.model.plan import arithmetic_for

    assert arithmetic_for(RunConfig.from_config({}), "cuda", capability).compute_bytes == expected.itemsize


def test_explicit_bf16_on_a_gpu_without_bf16_tensor_cores_warns(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    with caplog.at_level(logging.WARNING):
        assert compute_dtype("bf16", CUDA) == torch.bfloat16
    assert "compute capability 7.5, which has no bf16 tensor cores" in caplog.text


def test_cpu_precision_is_unchanged():
    assert compute_dtype("fp32", torch.device("cpu")) == torch.float32
    assert compute_dtype("auto", torch.device("cpu"), "nf4") == torch.float32
    assert not needs_grad_scaler(torch.bfloat16) and not needs_grad_scaler(torch.float32)


def _classifier(checkpoint, dtype=torch.float32, **model):
    run = RunConfig.from_config({"model": model})
    return attach_new_adapter(load_base_model(checkpoint, run.model, torch.device("cpu"), dtype, 0), run.model), run


def test_no_key_value_cache_and_fp32_logits_under_autocast(tiny_checkpoint):
    model, _ = _classifier(tiny_checkpoint)
    assert model.config.use_cache is False
    ids = torch.randint(5, 100, (2, 12))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    assert out.logits.dtype == torch.float32  # bf16 logits are 0.016 apart near +-2
    assert getattr(out, "past_key_values", None) is None


def test_sft_class_logits_are_fp32(tiny_checkpoint, tiny_tokenizer):
    from arenapref.model.heads import SftHead

    model, _ = _classifier(tiny_checkpoint, head="sft")
    ids = torch.randint(5, 100, (2, 12))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = SftHead(tiny_tokenizer).class_logits(model, ids, torch.ones_like(ids))
    assert logits.dtype == torch.float32 and logits.shape == (2, 3)


@pytest.fixture(scope="module")
def prequantized_checkpoint(tiny_checkpoint, tmp_path_factory):
    """A checkpoint saved already in nf4 (like unsloth's *-bnb-4bit), storing compute dtype fp32."""
    import shutil

    pytest.importorskip("bitsandbytes")
    out = tmp_path_factory.mktemp("tiny-nf4")
    run = RunConfig.from_config({"model": {"quantization": "nf4", "head": "sft"}})
    load_base_model(tiny_checkpoint, run.model, torch.device("cpu"), torch.float32, 0).save_pretrained(out)
    for tokenizer_file in tiny_checkpoint.glob("*token*"):
        shutil.copy2(tokenizer_file, out)
    return out


def test_prequantized_checkpoint_computes_in_the_runs_dtype(prequantized_checkpoint):
    run = RunConfig.from_config({})
    for dtype in (torch.float16, torch.bfloat16):
        model = load_base_model(prequantized_checkpoint, run.model, torch.device("cpu"), dtype, 0)
        four_bit = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
        assert four_bit and {m.compute_dtype for m in four_bit} == {dtype}


def test_prequantized_checkpoint_refuses_another_quantization(prequantized_checkpoint):
    from arenapref.model.modeling import checkpoint_quantization

    saved = checkpoint_quantization(prequantized_checkpoint)
    assert saved == "nf4"
    assert resolve_quantization("auto", torch.device("cpu"), saved) == "nf4"
    with pytest.raises(ConfigError, match=r"model.quantization is 'int8' but the checkpoint is already quantized"):
        resolve_quantization("int8", torch.device("cpu"), saved)
    run = RunConfig.from_config({"model": {"quantization": "none"}})
    with pytest.raises(ConfigError, match="already quantized"):
        load_base_model(prequantized_checkpoint, run.model, torch.device("cpu"), torch.float32, 0)


def _gradients(checkpoint, checkpointing: bool, rows=3, length=40):
    torch.manual_seed(0)
    model, run = _classifier(checkpoint, dtype=torch.float32)
    if checkpointing:
        enable_gradient_checkpointing(model, lora_layer_indices(model.config.num_hidden_layers, "upper_half"))
    model.train()
    from arenapref.bench.memory import saved_for_backward
    from arenapref.model.heads import ClassifierHead

    ids = torch.randint(5, 100, (rows, length))
    mask = torch.ones_like(ids)
    mask[0, length // 2 :] = 0
    torch.manual_seed(1)  # the same dropout masks in both runs
    with saved_for_backward(model) as saved:
        loss = ClassifierHead().loss(
            model, {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2][:rows])}, 0.0
        )
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return grads, saved["bytes"], run


def test_checkpointing_saves_less_and_gives_the_same_gradients(tiny_checkpoint):
    from arenapref.model.plan import Arithmetic, ModelShape, training_memory

    plain, saved_plain, run = _gradients(tiny_checkpoint, checkpointing=False)
    checkpointed, saved_checkpointed, _ = _gradients(tiny_checkpoint, checkpointing=True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:  # dropout included: the recomputation replays the RNG
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7)
    assert saved_checkpointed < saved_plain / 3

    shape = ModelShape.from_checkpoint(tiny_checkpoint, run)
    arith = Arithmetic("cpu", 4, "none")
    planned = {flag: training_memory(shape, run, arith, flag, 3, 40)["saved_activations"] for flag in (False, True)}
    assert planned[False] - planned[True] == pytest.approx(saved_plain - saved_checkpointed, rel=0.15)


def test_checkpointing_switch_resolves_by_device(tiny_checkpoint):
    from arenapref.model.runtime import Runtime

    assert Runtime.create(RunConfig.from_config({}), tiny_checkpoint).gradient_checkpointing is False  # auto on CPU
    forced = RunConfig.from_config({"train": {"gradient_checkpointing": True}})
    assert Runtime.create(forced, tiny_checkpoint).gradient_checkpointing is True
    # It trades memory for time with the same adapter: switching it keeps a fold's resume state valid.
    assert forced.training_hash() == RunConfig.from_config({}).training_hash()


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_kernels_on_cuda(tiny_checkpoint, monkeypatch, deterministic):
    """train.deterministic on a (faked) GPU: cuDNN deterministic without autotuning, torch's deterministic
    algorithms (warnings only) and cuBLAS's fixed workspace, set before the GPU is claimed."""
    from arenapref.model import runtime

    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", not deterministic)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # recorded, so that teardown removes what the run sets
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    claimed = {}

    def fake_claim(requested):
        claimed["cublas"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        return CUDA, {}

    monkeypatch.setattr(runtime, "claim_device", fake_claim)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    run = RunConfig.from_config({"device": "auto", "train": {"deterministic": deterministic}})
    try:
        rt = runtime.Runtime.create(run, tiny_checkpoint)
        assert rt.device.type == "cuda"
        assert torch.backends.cudnn.benchmark is False
        assert torch.backends.cudnn.deterministic is deterministic
        assert torch.are_deterministic_algorithms_enabled() is deterministic
        if deterministic:
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            assert claimed["cublas"] == ":4096:8"  # in place before the GPU was touched
        else:
            assert claimed["cublas"] is None
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_deterministic_kernels_stay_off_on_a_cpu(tiny_checkpoint, monkeypatch):
    from arenapref.model import runtime

    before = torch.are_deterministic_algorithms_enabled()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # recorded, so that teardown removes what the run sets
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    rt = runtime.Runtime.create(RunConfig.from_config({"device": "cpu"}), tiny_checkpoint)
    assert rt.device.type == "cpu" and torch.are_deterministic_algorithms_enabled() is before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
