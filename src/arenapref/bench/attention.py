"""CPU inference with transformers' eager attention against the sliced attention (cpu_attention)
on the same prepared model and rows, round by round in one process, so the machine's drift falls
on both alike (`arenapref-benchmark --attention-comparison ROUNDS`)."""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from arenapref.bench.inference import fresh_model
from arenapref.config import RunConfig
from arenapref.evaluate.predict import predict_probabilities
from arenapref.model import cpu_attention
from arenapref.model.heads import unwrapped
from arenapref.model.modeling import dtype_name, for_inference
from arenapref.model.runtime import Runtime


def attention_comparison(
    rt: Runtime, run: RunConfig, checkpoint: Path, input_ids: list[list[int]], rounds: int
) -> dict:
    if rt.device.type != "cpu":
        raise ValueError("the attention comparison measures CPU inference (CUDA keeps SDPA)")
    sliced = for_inference(fresh_model(rt, run, checkpoint), rt.predict_dtype)
    eager = copy.deepcopy(sliced)
    unwrapped(eager).set_attn_implementation("eager")
    sides = {"eager": eager, "sliced": sliced}
    settings = (rt.device, rt.predict_dtype, rt.tokenizer.pad_token_id)
    budget = (run.predict.tokens_per_batch, run.predict.max_batch_rows)

    def predict(model, ids: list[list[int]], desc: str) -> np.ndarray:
        return predict_probabilities(model, ids, *settings, *budget, desc=desc)

    for name, model in sides.items():
        predict(model, input_ids[:4], f"warm-up {name}")
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    probabilities = {}
    for round_index in range(rounds):
        for name, model in sides.items():
            start = time.perf_counter()
            probabilities[name] = predict(model, input_ids, f"round {round_index + 1} {name}")
            seconds[name].append(time.perf_counter() - start)
    real = sum(len(x) for x in input_ids)
    speedups = [e / s for e, s in zip(seconds["eager"], seconds["sliced"], strict=True)]
    return {
        "rows": len(input_ids),
        "real_tokens": real,
        "mean_tokens": real / max(1, len(input_ids)),
        "dtype": dtype_name(rt.predict_dtype),
        "tokens_per_batch": run.predict.tokens_per_batch,
        "attention": cpu_attention.NAME,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "speedup_per_round": speedups,
        "median_speedup": statistics.median(speedups),
        "max_probability_difference": float(np.abs(probabilities["eager"] - probabilities["sliced"]).max()),
    }


def render_attention_comparison(result: dict) -> str:
    lines = [
        f"CPU inference, eager attention against sliced ({result['attention']}): {result['rows']} rows, "
        f"{result['mean_tokens']:.0f} real tokens a row on average, {result['dtype']}, token budget "
        f"{result['tokens_per_batch']}, {result['threads']} torch threads; the two alternate within each round.",
        "",
        "| round | eager s | sliced s | eager / sliced |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for index, (eager, sliced, speedup) in enumerate(
        zip(result["seconds"]["eager"], result["seconds"]["sliced"], result["speedup_per_round"], strict=True)
    ):
        lines.append(f"| {index + 1} | {eager:.2f} | {sliced:.2f} | {speedup:.3f} |")
    lines += [
        "",
        f"Median eager / sliced: {result['median_speedup']:.3f}; largest probability difference "
        f"{result['max_probability_difference']:.2e}.",
    ]
    return "\n".join(lines) + "\n"
