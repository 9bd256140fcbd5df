"""Loading the sequence classifier: device choice, quantization, LoRA adapters."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from arenapref.config import ModelSettings
from arenapref.errors import CheckpointError, DeviceError

log = logging.getLogger(__name__)

NUM_LABELS = 3


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """"float32", "bfloat16", ...: how dtypes appear in logs, metrics and the benchmark."""
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
            log.warning("a GPU was allocated (CUDA_VISIBLE_DEVICES=%s) but CUDA is not available to PyTorch "
                        "(torch %s, CUDA build: %s); running on the CPU", visible, torch.__version__,
                        torch.version.cuda or "no")
        return torch.device("cpu")
    return torch.device(requested)


def resolve_quantization(mode: str, device: torch.device) -> str:
    if mode == "auto":
        return "nf4" if device.type == "cuda" else "none"
    return mode


def compute_dtype(precision: str, device: torch.device, quantization: str = "none") -> torch.dtype:
    """Arithmetic of training's frozen base (adapter weights and optimizer state stay fp32).

    auto: bf16 on CUDA (fp16 where unsupported); on a CPU bf16 only where the CPU multiplies it
    natively and the model is not quantized (there it trains about 1.4x faster), else fp32.
    """
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if quantization == "none" and cpu_has_native_bf16() else torch.float32
    return PRECISIONS[precision]


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


def check_checkpoint(path: str | Path) -> Path:
    """A clear message for the usual mistakes before transformers gives a long traceback."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"model checkpoint not found: {path} is not a directory. Set model.checkpoint to a local "
            "Hugging Face checkpoint, or leave it null to use the embedded default (prepare_model rule)."
        )
    config_file = path / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{path} has no config.json: not a Hugging Face checkpoint directory")
    weights = list(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"{path} has no *.safetensors weights (only safetensors checkpoints are loaded)")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != "llama":
        log.warning("checkpoint %s has model_type=%r; the pipeline is built and tested for llama", path, model_type)
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


def load_base_model(checkpoint: str | Path, settings: ModelSettings, device: torch.device, dtype: torch.dtype, pad_token_id: int):
    """The base Llama, quantized as configured: with a fresh 3-way classification layer for
    model.head classifier, with its language-model head for sft."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    checkpoint = check_checkpoint(checkpoint)
    model_config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=settings.trust_remote_code)
    already_quantized = getattr(model_config, "quantization_config", None) is not None
    mode = resolve_quantization(settings.quantization, device)
    quant = None if already_quantized else _quantization_config(mode, dtype)
    if settings.head == "sft":
        model_class, head_kwargs = AutoModelForCausalLM, {}
    else:
        model_class, head_kwargs = AutoModelForSequenceClassification, {"num_labels": NUM_LABELS}
    model = model_class.from_pretrained(
        checkpoint,
        **head_kwargs,
        dtype=dtype if quant is not None or device.type == "cuda" else torch.float32,
        quantization_config=quant,
        device_map={"": device.index if device.type == "cuda" and device.index is not None else str(device)},
        trust_remote_code=settings.trust_remote_code,
        attn_implementation="sdpa",
    )
    model.config.pad_token_id = pad_token_id
    return model


def lora_layer_indices(num_layers: int, which: str) -> list[int]:
    return list(range(num_layers // 2, num_layers)) if which == "upper_half" else list(range(num_layers))


def attach_new_adapter(model, settings: ModelSettings):
    """A fresh LoRA adapter on the base model (with the classifier head, a trainable classification layer)."""
    from peft import LoraConfig, TaskType, get_peft_model

    num_layers = model.config.num_hidden_layers
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_target_modules),
        layers_to_transform=lora_layer_indices(num_layers, settings.lora_layers),
        bias="none",
        # SEQ_CLS also keeps the new classification layer ("score") trainable and saved with the adapter.
        task_type=TaskType.CAUSAL_LM if settings.head == "sft" else TaskType.SEQ_CLS,
    )
    return get_peft_model(model, lora)


def load_trained_adapter(model, adapter_dir: str | Path):
    """The base model with a trained adapter, ready for inference."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise CheckpointError(f"no trained adapter at {adapter_dir} (adapter_model.safetensors missing)")
    try:
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    except Exception as err:  # a truncated or garbled file shows up as many exception types
        raise CheckpointError(
            f"the adapter at {adapter_dir} cannot be read ({type(err).__name__}: {str(err)[:200]}); delete that "
            "folder and rerun to retrain the fold"
        ) from err
