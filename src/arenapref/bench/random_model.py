"""Models with random weights in a real architecture's shape: the same memory and FLOPs as the real
one, built in seconds and without a download (the GPU check and the benchmark's CUDA step)."""

from __future__ import annotations

import gc
from pathlib import Path

import torch

PAD_ID = 0


def release_memory(device: torch.device) -> None:
    """Give freed tensors back (and, on a GPU, the cached blocks) before the next large model."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def random_checkpoint(out_dir: Path, shape: dict, device: torch.device) -> Path:
    """Random weights of `shape` (config.json fields; model_type picks the architecture, Llama without
    one), saved in bf16 (built on the device: an 8B model in seconds)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {"tie_word_embeddings": False, **shape, "pad_token_id": PAD_ID}
    config = AutoConfig.for_model(fields.pop("model_type", "llama"), **fields)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(out_dir, safe_serialization=True)
    del model
    release_memory(device)
    return out_dir
