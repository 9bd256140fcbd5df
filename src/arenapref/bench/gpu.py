"""On a CUDA machine: inference with a model of Llama-3.1-8B's shape (random weights, the same
FLOPs per token as the real one) in nf4, int8 and bf16, ours against the original method."""

from __future__ import annotations

import dataclasses
import gc
import logging
import tempfile
from pathlib import Path

import torch

from arenapref.bench.hardware import matmul_rate
from arenapref.config import RunConfig
from arenapref.plan import KNOWN_SHAPES

LLAMA_31_8B_SHAPE = KNOWN_SHAPES["llama-3.1-8b"]

log = logging.getLogger(__name__)



def write_random_checkpoint(out_dir: Path, shape: dict, pad_token_id: int, device: str = "cuda") -> Path:
    """A sequence-classification checkpoint with random weights, built on the device in bf16."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(**shape, num_labels=3, pad_token_id=pad_token_id)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForSequenceClassification(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(out_dir, safe_serialization=True)
    del model
    return out_dir


def bench_llama8b_shapes(rt, input_ids: list[list[int]], run: RunConfig, shape: dict = LLAMA_31_8B_SHAPE) -> dict:
    from arenapref.bench.suite import bench_inference, original_dtype
    from arenapref.modeling import attach_new_adapter, dtype_name, load_base_model

    ceilings = {dtype_name(d): matmul_rate(rt.device, d) for d in {rt.dtype, rt.predict_dtype, original_dtype(rt)}}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as work:
        checkpoint = write_random_checkpoint(Path(work), shape, rt.tokenizer.pad_token_id, device=str(rt.device))
        gc.collect()
        torch.cuda.empty_cache()
        for mode in ("nf4", "int8", "bf16"):
            log.info("Llama-3.1-8B shape in %s", mode)
            settings = dataclasses.replace(run.model, quantization="none" if mode == "bf16" else mode)
            try:
                torch.manual_seed(run.train.seed)
                model = attach_new_adapter(load_base_model(checkpoint, settings, rt.device, torch.bfloat16,
                                                                rt.tokenizer.pad_token_id), settings)
                model.eval()
                results[mode] = bench_inference(model, rt, run, input_ids, ceilings)
            except (RuntimeError, ImportError, ValueError) as err:  # out of memory, a missing kernel
                log.warning("Llama-3.1-8B shape in %s failed: %s", mode, err)
                results[mode] = {"error": str(err).splitlines()[0][:200]}
            finally:
                model = None
                gc.collect()
                torch.cuda.empty_cache()
    return results
