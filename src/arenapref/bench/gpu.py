"""On a CUDA machine: inference with a model of Llama-3.1-8B's shape (random weights, the same
FLOPs per token as the real one) in nf4, int8 and bf16, ours against the original method."""

from __future__ import annotations

import dataclasses
import gc
import logging
import tempfile
from pathlib import Path

import torch

from arenapref.bench.hardware import measure_matmul_ceiling
from arenapref.bench.inference import bench_inference, original_dtype
from arenapref.bench.random_model import random_checkpoint
from arenapref.config import RunConfig
from arenapref.model.plan import KNOWN_SHAPES

LLAMA_31_8B_SHAPE = KNOWN_SHAPES["llama-3.1-8b"]

log = logging.getLogger(__name__)


def bench_llama8b_shapes(rt, input_ids: list[list[int]], run: RunConfig, shape: dict = LLAMA_31_8B_SHAPE) -> dict:
    from arenapref.model.modeling import attach_new_adapter, dtype_name, load_base_model

    ceilings = {
        dtype_name(d): measure_matmul_ceiling(rt.device, d).flops_per_s
        for d in {rt.dtype, rt.predict_dtype, original_dtype(rt)}
    }
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as work:
        checkpoint = random_checkpoint(Path(work), shape, rt.device)
        for mode in ("nf4", "int8", "bf16"):
            log.info("Llama-3.1-8B shape in %s", mode)
            settings = dataclasses.replace(run.model, quantization="none" if mode == "bf16" else mode)
            try:
                torch.manual_seed(run.train.seed)
                model = attach_new_adapter(
                    load_base_model(checkpoint, settings, rt.device, rt.dtype, rt.tokenizer.pad_token_id), settings
                )
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
