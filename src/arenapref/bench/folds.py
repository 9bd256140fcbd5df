"""How much sharing the layers below the adapters saves: k folds predicted one at a time (the base
model reloaded per fold, as a per-fold loop does) against all k on one model with the lower layers
computed once per batch. Same rows, same model, same machine, one process."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from arenapref.config import RunConfig
from arenapref.evaluate.multifold import first_adapted_layer, load_fold_adapters, predict_folds
from arenapref.evaluate.predict import predict_probabilities
from arenapref.model.modeling import (
    attach_new_adapter,
    dtype_name,
    inference_precision,
    load_base_model,
    load_trained_adapter,
)
from arenapref.model.plan import pass_cost


def random_adapters(checkpoint: Path, run: RunConfig, names, out_dir: Path) -> dict[str, Path]:
    """Adapters with random LoRA and head weights, saved as out_dir/<name>/adapter (the pipeline's
    layout): their cost is a trained adapter's, and the folds differ."""
    adapters = {}
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        model = attach_new_adapter(
            load_base_model(checkpoint, run.model, torch.device("cpu"), torch.float32, 0), run.model
        )
        with torch.no_grad():
            for parameter in (p for p in model.parameters() if p.requires_grad):
                parameter.normal_(0, 0.1)
        adapters[name] = out_dir / name / "adapter"
        model.save_pretrained(adapters[name])
    return adapters


def bench_shared_folds(checkpoint: Path, run: RunConfig, rt, input_ids: list[list[int]], folds: int) -> dict:
    """Seconds of both ways over `input_ids` with `folds` adapters, and their largest difference."""
    device, dtype, pad = rt.device, rt.predict_dtype, rt.tokenizer.pad_token_id
    batch = (run.predict.tokens_per_batch, run.predict.max_batch_rows)
    with tempfile.TemporaryDirectory() as work:
        adapters = random_adapters(checkpoint, run, [f"fold{k}" for k in range(folds)], Path(work))
        started = time.perf_counter()
        one_at_a_time = {}
        for name, path in adapters.items():
            model = load_trained_adapter(load_base_model(checkpoint, run.model, device, rt.dtype, pad), path)
            model = inference_precision(model, dtype)
            one_at_a_time[name] = predict_probabilities(
                model, input_ids, device, dtype, pad, *batch, desc=name, head=rt.head
            )
            del model
        separate = time.perf_counter() - started
        started = time.perf_counter()
        model = load_fold_adapters(load_base_model(checkpoint, run.model, device, rt.dtype, pad), adapters)
        model = inference_precision(model, dtype)  # as the hand-in holds it
        split = first_adapted_layer(adapters, model.config.num_hidden_layers)
        shared = predict_folds(
            model, list(adapters), input_ids, device, dtype, pad, *batch, rt.head, split, desc="shared"
        )
        together = time.perf_counter() - started
    difference = max(float(np.abs(shared[name] - one_at_a_time[name]).max()) for name in adapters)
    layers = model.config.num_hidden_layers
    return {
        "folds": folds,
        "rows": len(input_ids),
        "tokens": sum(len(x) for x in input_ids),
        "dtype": dtype_name(dtype),
        "layers": layers,
        "shared_layers": split,
        "seconds_one_at_a_time": round(separate, 2),
        "seconds_shared": round(together, 2),
        "speedup": round(separate / together, 3),
        "expected_speedup": round(folds / pass_cost(split / layers, folds), 3),
        "max_probability_difference": difference,
    }


def shared_folds_table(result: dict) -> str:
    return "\n".join(
        [
            f"{result['folds']} folds over {result['rows']} rows ({result['tokens']:,} tokens) in {result['dtype']}; "
            f"layers 0-{result['shared_layers'] - 1} of {result['layers']} shared.",
            "",
            "| way | seconds | speedup | expected from the layers |",
            "| --- | ---: | ---: | ---: |",
            f"| one fold at a time (base model loaded per fold) | {result['seconds_one_at_a_time']} | 1.00 | |",
            f"| all folds on one model, lower layers once per batch | {result['seconds_shared']} "
            f"| {result['speedup']:.2f} | {result['expected_speedup']:.2f} |",
            "",
            f"Largest probability difference between the two ways: {result['max_probability_difference']:.1e}.",
        ]
    )
