"""Inference measured against the original method's Trainer.predict, on one model: shared by the
benchmark run (suite.py), its quality studies (quality.py) and the GPU benchmark (gpu_benchmark.py)."""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from arenapref.bench import baseline
from arenapref.bench.hardware import forward_flops, non_embedding_parameters
from arenapref.config import RunConfig
from arenapref.evaluate.predict import predict_probabilities
from arenapref.model.batching import padded_tokens, token_budget_batches
from arenapref.model.modeling import attach_new_adapter, dtype_name, for_inference

if TYPE_CHECKING:
    from arenapref.model.runtime import Runtime


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def classifier_run(run: RunConfig) -> RunConfig:
    """The benchmark compares classifiers: the original method had no other head."""
    return dataclasses.replace(run, model=dataclasses.replace(run.model, head="classifier"))


def fresh_model(rt: Runtime, run: RunConfig, checkpoint: Path, seed: int | None = None):
    """The base model with a new adapter, seeded: the same starting point for both sides of a comparison."""
    torch.manual_seed(run.train.seed if seed is None else seed)  # same head initialisation on both sides
    model = attach_new_adapter(rt.base_model(run, checkpoint), run.model)
    model.eval()
    return model


def model_shape(model) -> dict:
    config = model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {
        "non_embedding_parameters": non_embedding_parameters(model),
        "layers": config.num_hidden_layers,
        "attention_width": heads * head_dim,
    }


def original_dtype(rt: Runtime) -> torch.dtype:
    """The original method's arithmetic on this device: the training precision on CUDA (the
    notebook's fp16/bf16 Trainer flags); on a CPU the Trainer computes in fp32."""
    return rt.dtype if rt.device.type == "cuda" else torch.float32


def bench_inference(model, rt: Runtime, run: RunConfig, input_ids: list[list[int]], ceilings: dict) -> dict:
    """Our predict path (in the configured inference precision, and in the original's precision when
    that differs) against Trainer.predict in the original's precision, as the notebook ran it."""
    lengths = [len(x) for x in input_ids]
    shape = model_shape(model)
    flops = forward_flops(lengths, shape["non_embedding_parameters"], shape["layers"], shape["attention_width"])
    real = sum(lengths)
    pad_id = rt.tokenizer.pad_token_id
    batches = token_budget_batches(lengths, run.predict.tokens_per_batch, run.predict.max_batch_rows)
    ours_computed = padded_tokens(lengths, batches)

    def side(seconds: float, computed: int, dtype: torch.dtype) -> dict:
        name = dtype_name(dtype)
        return {
            "seconds": seconds,
            "dtype": name,
            "rows_per_s": rate(len(input_ids), seconds),
            "real_tokens_per_s": rate(real, seconds),
            "padding_efficiency": real / computed,
            "flops_per_s": rate(flops, seconds),
            "fraction_of_matmul_rate": rate(flops, seconds) / ceilings[name],
        }

    def ours(dtype: torch.dtype) -> tuple[np.ndarray, dict]:
        # As predict_fold prepares it; a copy, since the Trainer sides take the model as trained.
        prepared = for_inference(copy.deepcopy(model), dtype)
        # Warm-up on a few rows so one-time costs (thread pools, kernel choice) fall on neither side.
        predict_probabilities(
            prepared,
            input_ids[:4],
            rt.device,
            dtype,
            pad_id,
            run.predict.tokens_per_batch,
            run.predict.max_batch_rows,
            desc="warm-up",
        )
        start = time.perf_counter()
        probs = predict_probabilities(
            prepared,
            input_ids,
            rt.device,
            dtype,
            pad_id,
            run.predict.tokens_per_batch,
            run.predict.max_batch_rows,
            desc=f"ours {dtype_name(dtype)}",
        )
        return probs, side(time.perf_counter() - start, ours_computed, dtype) | {
            "tokens_per_batch": run.predict.tokens_per_batch
        }

    ours_probs, ours_side = ours(rt.predict_dtype)
    result = {"rows": len(input_ids), "real_tokens": real, "ours": ours_side}
    same_precision_probs = ours_probs
    base_dtype = original_dtype(rt)
    if rt.predict_dtype != base_dtype:
        same_precision_probs, result["ours_same_precision"] = ours(base_dtype)
        # What the lower precision costs in agreement with full precision, on the same rows.
        result["precision_max_probability_difference"] = float(np.abs(ours_probs - same_precision_probs).max())
    base_probs, base_seconds, base_count = baseline.trainer_predict(
        model, rt.tokenizer, input_ids, rt.device, base_dtype
    )
    result["baseline"] = side(base_seconds, base_count.computed, base_dtype) | {"batch_size": 8}
    result["speedup"] = rate(base_seconds, ours_side["seconds"])
    # The tuned Trainer: rows sorted by length, as many rows a batch as ours holds on average, and
    # the precision ours runs in (bf16 autocast where the hardware multiplies it).
    setup = baseline.tuned(max(1, round(len(input_ids) / len(batches))), rt.predict_dtype == torch.bfloat16)
    tuned_probs, tuned_seconds, tuned_count = baseline.trainer_predict(
        model, rt.tokenizer, input_ids, rt.device, rt.predict_dtype, setup
    )
    result["tuned"] = side(tuned_seconds, tuned_count.computed, rt.predict_dtype) | {
        "batch_size": setup.predict_batch_size
    }
    result["speedup_over_tuned"] = rate(tuned_seconds, ours_side["seconds"])
    result["tuned_max_probability_difference"] = float(np.abs(ours_probs - tuned_probs).max())
    if "ours_same_precision" in result:
        result["speedup_same_precision"] = rate(base_seconds, result["ours_same_precision"]["seconds"])
    # Same model, same ids, same precision: the two paths must compute the same probabilities.
    result["max_probability_difference"] = float(np.abs(same_precision_probs - base_probs).max())
    return result
