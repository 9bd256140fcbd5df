"""The GPU benchmark (`make gpu-benchmark`): ours against the tuned Trainer and the original
notebook's Trainer, in training and in inference, with a model of a real architecture's shape
(Llama-3.1-8B by default; random weights, so the same memory and FLOPs as the real one) in each
weight format asked for (nf4 and bf16 on CUDA), on the token lengths of real competition rows.

It runs where `make gpu-check` runs: torch, transformers, peft, bitsandbytes and jsonschema, no
polars and no snakemake. The rows are read with the standard library's csv module and the same
JSON-list parser as the pipeline's; they are tokenized with a local tokenizer (the real model's
when it is at hand) and built into inputs exactly as the pipeline builds them.

The held-out comparison after training tells whether the sides learn alike from the same start;
with random weights it says nothing of the score. Folds here are a seeded split of rows, not of
prompts, for the same reason.
"""

from __future__ import annotations

import csv
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from arenapref import LABEL_COLUMNS
from arenapref.bench.gpu_common import guarded, machine, matmul_ceiling, settings_for
from arenapref.bench.inference import bench_inference, classifier_run, fresh_model, original_dtype
from arenapref.bench.random_model import random_checkpoint, release_memory
from arenapref.bench.training import Sizes, bench_training
from arenapref.config import RunConfig
from arenapref.data.text import SEGMENTS, encode_with_lengths
from arenapref.data.turns import parse_turns
from arenapref.errors import DataError
from arenapref.model.modeling import dtype_name, load_tokenizer, resolve_device
from arenapref.model.runtime import Runtime

log = logging.getLogger(__name__)

N_FOLDS = 5  # fold 0 is the held-out set of the training comparison, as in `make benchmark`


def read_rows(path: Path) -> tuple[dict[str, list[list[str]]], list[int], int]:
    """The text turns of every row, each row's label index, and how many rows were dropped for an
    empty text cell (the pipeline drops those too). A field that is not a JSON list of strings, or
    labels that are not one 1 and two 0s, is a DataError naming the file, the row id and the field."""
    csv.field_size_limit(sys.maxsize)  # a response can be longer than csv's 128 KiB default
    rows: dict[str, list[list[str]]] = {name: [] for name in SEGMENTS}
    labels: list[int] = []
    dropped = 0
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("id", *SEGMENTS, *LABEL_COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"missing column(s): {', '.join(missing)}", line=1)
        for record in reader:
            row_id = record["id"]
            turns = {name: parse_turns(record[name], file=path, row=row_id, field=name) for name in SEGMENTS}
            flags = [record[c].strip() for c in LABEL_COLUMNS]
            if sorted(flags) != ["0", "0", "1"]:
                raise DataError(
                    path, f"expected one 1 and two 0s across {', '.join(LABEL_COLUMNS)}, got {flags}", row_id, "winner"
                )
            if any(value is None for value in turns.values()):
                dropped += 1
                continue
            for name in SEGMENTS:
                rows[name].append(turns[name])
            labels.append(flags.index("1"))
    if not labels:
        raise DataError(path, "no rows with text to benchmark on")
    return rows, labels, dropped


def seeded_folds(n_rows: int, seed: int, n_folds: int = N_FOLDS) -> np.ndarray:
    """Each row's fold: a seeded permutation dealt round-robin (equal folds, rows in random order)."""
    folds = np.empty(n_rows, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(n_rows)] = np.arange(n_rows) % n_folds
    return folds


def length_summary(input_ids: Sequence[Sequence[int]], untruncated: Sequence[int], max_length: int) -> dict:
    lengths = np.array([len(ids) for ids in input_ids])
    return {
        "rows": len(lengths),
        "max_length": max_length,
        "mean_tokens": float(lengths.mean()),
        "median_tokens": float(np.median(lengths)),
        "max_tokens": int(lengths.max()),
        "truncated_share": float(np.mean(np.asarray(untruncated) > max_length)),
    }


def bench_format(
    rt: Runtime,
    run: RunConfig,
    checkpoint: Path,
    input_ids: list[list[int]],
    labels: list[int],
    sizes: Sizes,
) -> dict:
    """Inference, then training, of one weight format: each side a fresh adapter on a fresh copy of
    the base from the same seed. A side that fails (out of memory, a missing kernel) is recorded."""
    ceilings = {
        dtype_name(dtype): matmul_ceiling(rt.device, dtype).flops_per_s
        for dtype in {rt.dtype, rt.predict_dtype, original_dtype(rt)}
    }
    entry: dict = {
        "runtime": rt.describe(),
        "matmul_flops_per_s": ceilings,
    }

    def inference() -> dict:
        model = fresh_model(rt, run, checkpoint)
        try:
            return bench_inference(model, rt, run, input_ids[: sizes.inference_rows], ceilings)
        finally:
            del model
            release_memory(rt.device)

    def training() -> dict:
        folds = seeded_folds(len(input_ids), run.train.seed)
        return bench_training(rt, run, checkpoint, folds, labels, input_ids, sizes, ceilings=ceilings)

    log.info("%s inference: ours against Trainer.predict, %d rows", run.model.quantization, sizes.inference_rows)
    entry["inference"] = guarded(rt.device, inference)
    log.info("%s training: ours against Trainer, %d optimizer steps a side", run.model.quantization, sizes.train_steps)
    entry["training"] = guarded(rt.device, training)
    return entry


def run_gpu_benchmark(
    run: RunConfig,
    shape: dict,
    tokenizer_dir: Path,
    train_csv: Path,
    formats: Sequence[str],
    quick: bool,
    work_dir: Path | None = None,
) -> dict:
    """Every weight format in `formats` (nf4, int8, none) with one random checkpoint of `shape`."""
    started = time.perf_counter()
    run = classifier_run(run)
    sizes = Sizes.for_mode(quick)
    rows, labels, dropped = read_rows(train_csv)
    log.info("%d rows of %s (%d dropped for an empty text cell)", len(labels), train_csv, dropped)
    vocabulary = len(load_tokenizer(tokenizer_dir, run.model.trust_remote_code))
    if shape.get("vocab_size", 0) < vocabulary:
        # The tokenizer's ids must index the embedding: a tiny test shape grows to the tokenizer's size.
        log.info("vocabulary %s -> %d (the tokenizer's)", shape.get("vocab_size"), vocabulary)
        shape = {**shape, "vocab_size": vocabulary}
    report: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "mode": "quick" if quick else "full",
        "shape": shape,
        "tokenizer": str(tokenizer_dir),
        "data": {"train_csv": str(train_csv), "rows": len(labels), "dropped_empty_text": dropped},
        "sizes": {
            "inference_rows": sizes.inference_rows,
            "train_steps": sizes.train_steps,
            "eval_rows": sizes.eval_rows,
        },
        "formats": {},
    }
    with tempfile.TemporaryDirectory(dir=work_dir) as work:
        device = resolve_device(run.device)
        report["machine"] = machine(device)
        log.info("random weights of the shape, saved once for every format")
        checkpoint = random_checkpoint(Path(work) / "model", shape, device)
        for quantization in formats:
            format_run = settings_for(run, quantization)
            rt = Runtime.create(format_run, checkpoint, tokenizer_dir)
            if "lengths" not in report:  # every format reads the same inputs: encoded once
                input_ids, untruncated = encode_with_lengths(rt.tokenizer, rows, rt.builder)
                report["lengths"] = length_summary(input_ids, untruncated, run.model.max_length)
            report["formats"][quantization] = bench_format(rt, format_run, checkpoint, input_ids, labels, sizes)
    report["matmul_ceiling"] = [matmul_ceiling(device, dtype).as_dict() for dtype in _measured_dtypes(report)]
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _measured_dtypes(report: dict) -> list[torch.dtype]:
    names = {name for entry in report["formats"].values() for name in entry["matmul_flops_per_s"]}
    return [dtype for dtype in (torch.float32, torch.bfloat16, torch.float16) if dtype_name(dtype) in names]
