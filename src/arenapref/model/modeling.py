"""Loading the sequence classifier: device choice, quantization, LoRA adapters."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from arenapref.config import ModelSettings
from arenapref.errors import CheckpointError, ConfigError, DeviceError
from arenapref.model.heads import unwrapped
from arenapref.model.model_files import check_checkpoint_files

log = logging.getLogger(__name__)

NUM_LABELS = 3


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """ "float32", "bfloat16", ...: how dtypes appear in logs, metrics and the benchmark."""
    return str(dtype).removeprefix("torch.")


def resolve_device(requested: str) -> torch.device:
    """auto picks CUDA when present; an explicit cuda request without CUDA is an error, not a silent CPU run."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "a GPU was requested (device: cuda) but CUDA is not available to PyTorch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}, "
                f"CUDA_VISIBLE_DEVICES={visible if visible is not None else '<unset>'}). Install a CUDA build "
                "of torch on the GPU machine, or set device: cpu."
            )
        return torch.device("cuda")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if visible not in (None, "", "-1"):
            # A scheduler gave this job a GPU, yet torch cannot use it: say so, then run on the CPU.
            log.warning(
                "a GPU was allocated (CUDA_VISIBLE_DEVICES=%s) but CUDA is not available to PyTorch "
                "(torch %s, CUDA build: %s); running on the CPU",
                visible,
                torch.__version__,
                torch.version.cuda or "no",
            )
        return torch.device("cpu")
    return torch.device(requested)


# cuBLAS's deterministic workspace setting (8 buffers of 4 MiB), which torch requires for
# deterministic matrix products on CUDA 10.2 and later.
CUBLAS_WORKSPACE = ":4096:8"


def request_deterministic_cublas(enabled: bool) -> None:
    """train.deterministic: cuBLAS's fixed workspace. cuBLAS reads it once, at its first use on the GPU,
    so this comes before any CUDA work; a value the user set wins."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def use_deterministic_cuda(enabled: bool) -> None:
    """train.deterministic on CUDA: deterministic kernels where torch has them cheaply, so that more of
    a rerun with the same seed repeats. A transformer has no convolutions, so cuDNN's deterministic
    choice costs nothing. With warn_only an op without a deterministic CUDA kernel warns instead of
    failing; that includes the backward pass of SDPA's flash and memory-efficient attention, which
    torch makes deterministic only without warn_only (docs/gpu.md, Determinism).
    CUBLAS_WORKSPACE_CONFIG must be set before CUDA's first use (request_deterministic_cublas)."""
    torch.backends.cudnn.benchmark = False  # its autotuning may pick a different kernel each run
    torch.backends.cudnn.deterministic = enabled
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    if enabled and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
        log.warning("CUBLAS_WORKSPACE_CONFIG is not set to a deterministic value: matrix products may vary by run")


def checkpoint_quantization(checkpoint: str | Path) -> str | None:
    """The quantization a pre-quantized checkpoint was saved in (nf4, fp4 or int8), None for plain weights."""
    config_file = Path(checkpoint) / "config.json"
    try:
        quant = json.loads(config_file.read_text()).get("quantization_config")
    except (OSError, ValueError):
        return None
    if not quant:
        return None
    if quant.get("load_in_8bit"):
        return "int8"
    if quant.get("load_in_4bit"):
        return quant.get("bnb_4bit_quant_type", "nf4")
    return str(quant.get("quant_method", "unknown"))


def resolve_quantization(mode: str, device: torch.device, saved: str | None = None) -> str:
    """The quantization the base model runs in. A pre-quantized checkpoint (`saved`) can only run as
    saved, so an explicit other mode is an error rather than being silently ignored."""
    if saved is not None:
        if mode not in ("auto", saved):
            raise ConfigError(
                f"model.quantization is {mode!r} but the checkpoint is already quantized ({saved}, bitsandbytes); "
                f"set model.quantization: auto (or {saved}), or point model.checkpoint at unquantized weights"
            )
        return saved
    if mode == "auto":
        return "nf4" if device.type == "cuda" else "none"
    return mode


def cuda_has_native_bf16(device: torch.device) -> bool:
    """bf16 tensor cores from compute capability 8.0 (A100, A10, L4, RTX 30xx/40xx, H100). Below it
    (T4 7.5, V100 7.0, P100 6.0) `torch.cuda.is_bf16_supported()` still says yes, counting emulation:
    there bf16 runs without tensor cores and SDPA falls back to its math kernel, which builds whole
    L x L score matrices; fp16 with a gradient scaler is the right choice on those cards."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def auto_dtype(device_type: str, quantization: str, capability: tuple[int, int] | None = None) -> torch.dtype:
    """What `precision: auto` picks: on CUDA bf16 from compute capability 8.0 (or an unknown one),
    fp16 below; on a CPU bf16 only where it is native and the model is not quantized, else fp32.
    Pure, so the planner can ask it for a GPU it does not have."""
    if device_type == "cuda":
        return torch.bfloat16 if capability is None or capability >= (8, 0) else torch.float16
    return torch.bfloat16 if quantization == "none" and cpu_has_native_bf16() else torch.float32


def checkpointing_choice(
    setting: str | bool, device_type: str, peak_without: int | None = None, free_bytes: int | None = None
) -> tuple[bool, str]:
    """train.gradient_checkpointing, and why: true and false are obeyed; auto is off on a CPU (host
    memory is rarely the limit there, and recomputation costs time) and on CUDA off where the planned
    training step without it (`peak_without`: the run's batch at its longest length) fits the
    `free_bytes` the device has free, with the plan's margins (plan.fits), on otherwise. Without a
    plan, auto on CUDA is on: the side that fits."""
    if setting != "auto":
        return bool(setting), f"train.gradient_checkpointing is {str(bool(setting)).lower()}"
    if device_type != "cuda":
        return False, "auto, on a CPU"
    if peak_without is None or free_bytes is None:
        return True, "auto, on CUDA without a memory plan"
    from arenapref.model.plan import CUDA_CONTEXT_BYTES, GIB, fits

    # The CUDA context is already among the used bytes when `free_bytes` is read: fits() must not count it twice.
    if fits(peak_without, free_bytes + CUDA_CONTEXT_BYTES):
        return False, f"the step needs {peak_without / GIB:.1f} GiB of {free_bytes / GIB:.1f} GiB free without it"
    return True, (
        f"without it the step would need {peak_without / GIB:.1f} GiB, more than {free_bytes / GIB:.1f} GiB free "
        "holds with the plan's margins"
    )


def resolve_checkpointing(
    setting: str | bool, device_type: str, peak_without: int | None = None, free_bytes: int | None = None
) -> bool:
    """train.gradient_checkpointing resolved (checkpointing_choice, without the reason)."""
    return checkpointing_choice(setting, device_type, peak_without, free_bytes)[0]


def compute_dtype(precision: str, device: torch.device, quantization: str = "none") -> torch.dtype:
    """Arithmetic of training's frozen base (adapter weights and optimizer state stay fp32).

    auto: on CUDA bf16 from compute capability 8.0, fp16 (with a gradient scaler) below it; on a CPU
    bf16 only where the CPU multiplies it natively and the model is not quantized (there it trains
    about 1.4x faster), else fp32. An explicit bf16 on a GPU without bf16 tensor cores is obeyed,
    with a warning.
    """
    if precision == "auto":
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        return auto_dtype(device.type, quantization, capability)
    dtype = PRECISIONS[precision]
    if dtype == torch.bfloat16 and device.type == "cuda" and not cuda_has_native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        log.warning(
            "precision bf16 on a GPU of compute capability %d.%d, which has no bf16 tensor cores: "
            "expect slow training and the memory-hungry attention kernel; fp16 (or auto) fits it",
            major,
            minor,
        )
    return dtype


def needs_grad_scaler(dtype: torch.dtype) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 have fp32's exponent range."""
    return dtype == torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (there bf16 matmuls run about twice as fast)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inference_dtype(precision: str, device: torch.device, train_dtype: torch.dtype, quantization: str) -> torch.dtype:
    if precision != "auto":
        return PRECISIONS[precision]
    if device.type == "cuda":
        return train_dtype
    if quantization == "none" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


# Architectures the tests run through the whole pipeline (tests/tiny_llama.py builds each).
TESTED_MODEL_TYPES = ("llama", "gemma2", "qwen2", "mistral")


def check_checkpoint(path: str | Path, tokenizer: str | Path | bool = True) -> Path:
    """A clear message for an unusable checkpoint folder (missing, empty, incomplete) before
    transformers gives a long traceback; `tokenizer` as in model_files.checkpoint_problem."""
    path = check_checkpoint_files(path, tokenizer)
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type not in TESTED_MODEL_TYPES:
        log.warning(
            "checkpoint %s has model_type=%r; the pipeline is built and tested for %s",
            path,
            model_type,
            ", ".join(TESTED_MODEL_TYPES),
        )
    return path


def load_tokenizer(checkpoint: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        # Llama tokenizers ship without a pad token; the end-of-sequence token serves.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _quantization_config(mode: str, dtype: torch.dtype):
    from transformers import BitsAndBytesConfig

    if mode == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    if mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


class Float32Linear(torch.nn.Linear):
    """The classification layer, computed in fp32 even inside autocast: bf16 logits are about 0.016
    apart near +-2, coarse for a log-loss metric; three outputs cost nothing in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            bias = None if self.bias is None else self.bias.float()
            return torch.nn.functional.linear(x.float(), self.weight.float(), bias)


def _set_4bit_compute_dtype(model, dtype: torch.dtype) -> int:
    """Make every 4-bit layer compute in the run's dtype. A pre-quantized checkpoint stores its own
    compute dtype (often bf16, even for a T4 that should run fp16), and transformers keeps it."""
    changed = 0
    for module in model.modules():
        if hasattr(module, "compute_dtype") and type(module).__name__ == "Linear4bit":
            module.compute_dtype = dtype
            changed += 1
    return changed


def supported_attention(model_class) -> tuple[str, ...]:
    """The attention implementations a transformers model class declares it can run; eager always."""
    supported = ["eager"]
    if getattr(model_class, "_supports_sdpa", False):
        supported.append("sdpa")
    if getattr(model_class, "_supports_flex_attn", False):
        supported.append("flex_attention")
    return tuple(supported)


def choose_attention(requested: str, supported: tuple[str, ...], device_type: str, name: str) -> tuple[str, str]:
    """model.attn_implementation for one architecture on one device: the choice and why.

    auto: sdpa where the class allows it (a fused kernel that keeps no L x L scores); otherwise
    flex_attention on CUDA (Gemma-2's classifier refuses sdpa because of its soft-capping; flex
    applies the capping inside its kernel: on an H200 a Gemma-2-9B step at 4 x 2048 peaked at
    10.2 GiB and 6,300 tokens/s, eager at 13.3 GiB and 5,100); otherwise eager. flex_attention is
    compiled by Triton on CUDA only, so a CPU gets eager. An explicit choice the class cannot run
    is an error, not a silent fallback."""
    if requested != "auto":
        if requested not in supported:
            raise ConfigError(
                f"model.attn_implementation is {requested!r} but {name} supports only {', '.join(supported)}; "
                "set model.attn_implementation: auto"
            )
        return requested, "set in model.attn_implementation"
    if "sdpa" in supported:
        return "sdpa", f"{name} supports sdpa"
    if device_type == "cuda" and "flex_attention" in supported:
        return "flex_attention", f"{name} does not support sdpa; flex_attention is the fused kernel on CUDA"
    return "eager", f"{name} supports neither sdpa nor, on {device_type}, flex_attention"


def concrete_model_class(auto_class, model_config):
    """The transformers class an Auto class builds for this config; None for remote code."""
    try:
        return auto_class._model_mapping[type(model_config)]
    except KeyError:
        return None


def turn_off_softcapping(model_config) -> bool:
    """model.attn_softcapping false: attention scores uncapped (Gemma-2's tanh at 50). True when the
    config had capping to remove; other architectures have no such setting."""
    if getattr(model_config, "attn_logit_softcapping", None) is None:
        return False
    model_config.attn_logit_softcapping = None
    return True


def is_reward_model(model_config) -> bool:
    """A checkpoint saved as a sequence classifier with other than three labels (a reward model has one)."""
    architectures = getattr(model_config, "architectures", None) or []
    return any(a.endswith("ForSequenceClassification") for a in architectures) and model_config.num_labels != NUM_LABELS


def load_base_model(
    checkpoint: str | Path, settings: ModelSettings, device: torch.device, dtype: torch.dtype, pad_token_id: int
):
    """The base decoder (Llama, Gemma-2, Qwen2, Mistral), quantized as configured: with a fresh 3-way
    classification layer for model.head classifier (replacing a reward model's head), with its
    language-model head for sft. The key-value cache is off: the pipeline never generates, and the
    cache would hold every layer's keys and values of each batch."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    checkpoint = check_checkpoint(checkpoint, tokenizer=False)  # the caller loads the tokenizer
    model_config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=settings.trust_remote_code)
    model_config.use_cache = False
    saved = checkpoint_quantization(checkpoint)
    mode = resolve_quantization(settings.quantization, device, saved)
    quant = None if saved is not None else _quantization_config(mode, dtype)
    replace_head = False
    if settings.head == "sft":
        model_class = AutoModelForCausalLM
    else:
        model_class = AutoModelForSequenceClassification
        replace_head = is_reward_model(model_config)
        if replace_head:
            log.info(
                "%s has a classification head of %d outputs (a reward model): it gets a fresh %d-way head",
                checkpoint,
                model_config.num_labels,
                NUM_LABELS,
            )
        model_config.num_labels = NUM_LABELS
    if not settings.attn_softcapping and turn_off_softcapping(model_config):
        log.info("attention logit soft-capping turned off (model.attn_softcapping: false)")
    concrete = concrete_model_class(model_class, model_config)
    if concrete is None:  # remote code: its own class decides
        attention = None if settings.attn_implementation == "auto" else settings.attn_implementation
        log.info("attention: %s (remote code)", attention or "the model's default")
    else:
        attention, why = choose_attention(
            settings.attn_implementation, supported_attention(concrete), device.type, concrete.__name__
        )
        log.info("attention: %s (%s)", attention, why)
    model = model_class.from_pretrained(
        checkpoint,
        config=model_config,
        dtype=dtype if mode != "none" or device.type == "cuda" else torch.float32,
        quantization_config=quant,
        device_map={"": device.index if device.type == "cuda" and device.index is not None else str(device)},
        trust_remote_code=settings.trust_remote_code,
        attn_implementation=attention,
        ignore_mismatched_sizes=replace_head,
    )
    model.config.pad_token_id = pad_token_id
    model.config.use_cache = False
    if mode in ("nf4", "fp4"):
        _set_4bit_compute_dtype(model, dtype)
    score = getattr(model, "score", None)
    if type(score) is torch.nn.Linear:
        score.__class__ = Float32Linear
        score.float()
    return model


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder layers of a (possibly LoRA-wrapped) causal language model."""
    base = unwrapped(model)
    body = getattr(base, base.base_model_prefix, base)
    return body.layers


def enable_gradient_checkpointing(model, layer_indices: list[int]) -> None:
    """Non-reentrant activation checkpointing of the given decoder layers (the ones with adapters).

    Only these need it: layers below the first adapter get no gradient, so they store nothing for
    the backward pass anyway. Non-reentrant checkpointing needs no input gradients (unlike
    peft's prepare_model_for_kbit_training, which would push the backward pass through the frozen
    lower half) and restores the RNG state, so dropout masks repeat exactly in the recomputation.
    """
    from functools import partial

    from torch.utils.checkpoint import checkpoint

    layers = decoder_layers(model)
    for index in layer_indices:
        layers[index].gradient_checkpointing = True
        layers[index]._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)


def lora_layer_indices(num_layers: int, which: str) -> list[int]:
    return list(range(num_layers // 2, num_layers)) if which == "upper_half" else list(range(num_layers))


@contextmanager
def bitsandbytes_kept_out():
    """peft without bitsandbytes while no layer is quantized.

    peft imports bitsandbytes whenever it is installed (and its LoRA layers ask for it), and
    bitsandbytes on a CPU logs a warning about a missing `kernels` package at import, in every job's
    log. A quantized model has imported bitsandbytes by the time it is loaded, so while it is not
    imported nothing is quantized: inside this block `import bitsandbytes` fails and peft and
    transformers find it not installed; their cached answers are dropped on the way in and out, so
    that a quantized model loaded later in the same process still finds it."""
    if "bitsandbytes" in sys.modules:
        yield
        return
    sys.modules["bitsandbytes"] = None  # import fails; importlib.util.find_spec answers None
    _forget_bitsandbytes_checks()
    try:
        yield
    finally:
        if "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None:
            del sys.modules["bitsandbytes"]
        _forget_bitsandbytes_checks()


def _forget_bitsandbytes_checks() -> None:
    checks = [
        (sys.modules.get("peft.import_utils"), "is_bnb_available"),
        (sys.modules.get("peft.import_utils"), "is_bnb_4bit_available"),
        (sys.modules.get("transformers.utils.import_utils"), "is_bitsandbytes_available"),
    ]
    for module, name in checks:
        cache_clear = getattr(getattr(module, name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()


def attach_new_adapter(model, settings: ModelSettings):
    """A fresh LoRA adapter on the base model (with the classifier head, a trainable classification layer)."""
    with bitsandbytes_kept_out():
        from peft import LoraConfig, TaskType, get_peft_model

    num_layers = model.config.num_hidden_layers
    lora = LoraConfig(
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=list(settings.lora.target_modules),
        layers_to_transform=lora_layer_indices(num_layers, settings.lora.layers),
        bias="none",
        # SEQ_CLS also keeps the new classification layer ("score") trainable and saved with the adapter.
        task_type=TaskType.CAUSAL_LM if settings.head == "sft" else TaskType.SEQ_CLS,
    )
    with bitsandbytes_kept_out():
        return get_peft_model(model, lora)


def is_quantized(model) -> bool:
    return any(type(m).__name__ in ("Linear4bit", "Linear8bitLt") for m in model.modules())


def for_inference(model, dtype: torch.dtype):
    """The model as inference should compute it (no training follows).

    A LoRA adapter on unquantized weights is merged into them: its two small matrix products and the
    sum per adapted projection took a fifth of a 135M model's CPU inference time. A quantized base
    keeps the adapter apart (merging into 4-bit or 8-bit weights would round it away). The model
    is then held in the inference precision (`inference_precision`).
    """
    with bitsandbytes_kept_out():
        from peft import PeftModel

        if isinstance(model, PeftModel) and not is_quantized(model):
            model = model.merge_and_unload()
    return inference_precision(model, dtype)


def inference_precision(model, dtype: torch.dtype):
    """Hold the model in `dtype` and pick the attention that computes it fastest; for one merged
    model or several adapters on one base alike.

    On CUDA an unquantized base is loaded in the training precision and a quantized one cannot be
    cast, so this changes nothing there. On a CPU the base is loaded in fp32 for training under
    autocast; for inference every weight but the fp32 classification layer is stored in `dtype`, so
    the residual stream runs in it as on CUDA (autocast had copied each layer's input and weights
    into bf16 every batch: a quarter of the embedded model's time), and attention is computed as
    two batched matrix products around a softmax, a slice at a time (cpu_attention; eager's
    arithmetic): SDPA's CPU kernel ran 2.5 to 3 times slower than such products at head width 64
    and 64 to 256 tokens, and eager attention, the whole batch's scores at once, 1.2 to 9 times
    slower than the slices from 128 to 1,024 tokens.
    """
    if dtype != torch.float32 and not is_quantized(model):
        model.to(dtype)
        for module in model.modules():
            if isinstance(module, Float32Linear):
                module.float()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if next(model.parameters()).device.type == "cpu" and hasattr(base, "set_attn_implementation"):
        from arenapref.model import cpu_attention

        cpu_attention.register()
        base.set_attn_implementation(cpu_attention.NAME if cpu_attention.supports(base.config) else "eager")
    model.eval()
    return model


def load_trained_adapter(model, adapter_dir: str | Path):
    """The base model with a trained adapter, ready for inference."""
    with bitsandbytes_kept_out():
        from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise CheckpointError(f"no trained adapter at {adapter_dir} (adapter_model.safetensors missing)")
    try:
        with bitsandbytes_kept_out():
            return PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    except Exception as err:  # a truncated or garbled file shows up as many exception types
        raise CheckpointError(
            f"the adapter at {adapter_dir} cannot be read ({type(err).__name__}: {str(err)[:200]}); delete that "
            "folder and rerun to retrain the fold"
        ) from err
