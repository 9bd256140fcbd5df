"""The benchmark run: inference, training, preprocessing and the hardware ceiling, in one process."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from arenapref.bench import baseline, preprocessing
from arenapref.bench.hardware import dense_layer_rate, dense_layer_shapes, measure_matmul_ceiling, training_flops
from arenapref.bench.inference import bench_inference, fresh_model, model_shape, original_dtype, rate
from arenapref.config import RunConfig
from arenapref.data.preprocess import preprocess_train
from arenapref.evaluate.metrics import accuracy, prior_log_loss, row_log_losses, standard_error
from arenapref.evaluate.predict import predict_probabilities
from arenapref.model.modeling import dtype_name, lora_layer_indices
from arenapref.model.runtime import Runtime, package_versions
from arenapref.train.training import Examples, train_adapter

log = logging.getLogger(__name__)

BASELINE_BATCH = 4
ROWS_PER_STEP = 16  # the notebook's batch 4 x gradient accumulation 4


@dataclass(frozen=True)
class Sizes:
    """How much work each part does; --quick shrinks everything to check the numbers are produced."""

    inference_rows: int
    train_steps: int
    eval_rows: int
    preprocess_rows: int
    matmul_seconds: float

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(inference_rows=48, train_steps=2, eval_rows=32, preprocess_rows=2_000, matmul_seconds=0.5)
        return cls(
            inference_rows=320,
            train_steps=20,
            eval_rows=160,
            preprocess_rows=preprocessing.FULL_SIZE,
            matmul_seconds=3.0,
        )


def bench_training(
    rt: Runtime,
    run: RunConfig,
    checkpoint: Path,
    table: pl.DataFrame,
    input_ids: list[list[int]],
    sizes: Sizes,
    seed: int | None = None,
    same_precision: bool = False,
    ceilings: dict[str, float] | None = None,
) -> dict:
    """Both methods train a fresh adapter for the same optimizer steps on the same rows (16 per step),
    then both adapters are scored on the same held-out fold, row by row (a paired comparison).

    `seed` sets the head's initial weights, the row order and dropout on both sides; the rows and
    the held-out fold stay the same. `same_precision` also times ours in fp32 when it trains in bf16.
    `ceilings` (matmul FLOP/s by dtype name) adds each side's fraction of the matmul rate.
    """
    seed = run.train.seed if seed is None else seed
    folds = table["fold"].to_numpy()
    labels = table["label"].to_list()
    train_index = np.flatnonzero(folds != 0)
    eval_index = np.flatnonzero(folds == 0)[: sizes.eval_rows]
    steps = min(sizes.train_steps, len(train_index) // ROWS_PER_STEP)
    if steps < 1 or len(eval_index) == 0:
        raise ValueError(
            f"too few rows to benchmark training ({len(train_index)} training, {len(eval_index)} held out)"
        )
    train_index = train_index[: steps * ROWS_PER_STEP]
    train_ids = [input_ids[i] for i in train_index]
    train_labels = [labels[i] for i in train_index]
    eval_ids = [input_ids[i] for i in eval_index]
    eval_labels = [labels[i] for i in eval_index]
    train_lengths = [len(x) for x in train_ids]

    def fraction(model, seconds: float, dtype: torch.dtype) -> dict:
        """The side's FLOP rate over the matmul rate of its dtype (every side trains the same shape)."""
        if not ceilings or dtype_name(dtype) not in ceilings:
            return {}
        shape = model_shape(model)
        adapted = len(lora_layer_indices(shape["layers"], run.model.lora.layers)) / shape["layers"]
        flops = training_flops(
            train_lengths,
            shape["non_embedding_parameters"],
            shape["layers"],
            shape["attention_width"],
            backward_share=adapted,
            # Neither side recomputes: fresh_model switches no gradient checkpointing on.
            recompute_share=0.0,
        )
        return {"fraction_of_matmul_rate": rate(flops, seconds) / ceilings[dtype_name(dtype)]}

    # Ours takes the original's batch shape, 4 rows x accumulation 4. With 8 x 2 and the earlier
    # order (sorted rows, batches at random) the held-out log loss after 18 steps was 0.038 worse
    # (SE 0.021, 5 seeds) on the generated sample, where length goes with the label.
    settings = dataclasses.replace(
        run.train,
        epochs=1,
        batch_size=BASELINE_BATCH,
        seed=seed,
        grad_accum=ROWS_PER_STEP // BASELINE_BATCH,
        chunk_size=ROWS_PER_STEP * max(1, run.train.chunk_size // ROWS_PER_STEP),
    )

    def held_out(model) -> tuple[dict, np.ndarray]:
        probs = predict_probabilities(
            model,
            eval_ids,
            rt.device,
            rt.predict_dtype,
            rt.tokenizer.pad_token_id,
            run.predict.tokens_per_batch,
            run.predict.max_batch_rows,
            desc="held-out",
        )
        losses = row_log_losses(eval_labels, probs)
        return {"log_loss": float(losses.mean()), "accuracy": accuracy(eval_labels, probs)}, losses

    def ours(dtype: torch.dtype) -> tuple[dict, np.ndarray]:
        model = fresh_model(rt, run, checkpoint, seed)
        with tempfile.TemporaryDirectory() as resume_dir:
            examples = Examples(train_ids, train_labels, rt.tokenizer.pad_token_id)
            result = train_adapter(model, examples, settings, rt.device, dtype, Path(resume_dir), {"benchmark": "ours"})
        scores, losses = held_out(model)
        return {
            "seconds": result.seconds,
            "optimizer_steps": result.optimizer_steps,
            "dtype": dtype_name(dtype),
            "real_tokens_per_s": rate(result.tokens, result.session_seconds),
            "padding_efficiency": result.tokens / result.tokens_computed,
            "batch_size": settings.batch_size,
            "grad_accum": settings.grad_accum,
        } | fraction(model, result.session_seconds, dtype) | scores, losses

    def trainer(setup: baseline.TrainerSetup, dtype: torch.dtype) -> tuple[dict, np.ndarray]:
        model = fresh_model(rt, run, checkpoint, seed)
        seconds, count = baseline.trainer_train(
            model,
            rt.tokenizer,
            train_ids,
            train_labels,
            steps,
            run.train.learning_rate,
            run.train.warmup_ratio,
            seed,
            rt.device,
            dtype,
            setup,
        )
        scores, losses = held_out(model)
        return {
            "seconds": seconds,
            "optimizer_steps": steps,
            "dtype": dtype_name(dtype),
            "real_tokens_per_s": rate(count.real, seconds),
            "padding_efficiency": count.padding_efficiency,
            "batch_size": setup.batch_size,
            "grad_accum": setup.grad_accum,
        } | fraction(model, seconds, dtype) | scores, losses

    ours_side, ours_losses = ours(rt.dtype)
    base_dtype = original_dtype(rt)
    base, base_losses = trainer(baseline.ORIGINAL, base_dtype)
    tuned_setup = baseline.tuned(
        BASELINE_BATCH, rt.dtype == torch.bfloat16, batch_size=settings.batch_size, grad_accum=settings.grad_accum
    )
    tuned_side, tuned_losses = trainer(tuned_setup, rt.dtype)
    difference = ours_losses - base_losses
    tuned_difference = ours_losses - tuned_losses
    result = {
        "seed": seed,
        "train_rows": len(train_ids),
        "real_tokens": sum(len(x) for x in train_ids),
        "eval_rows": len(eval_ids),
        "class_prior_log_loss": prior_log_loss(train_labels, eval_labels),
        "ours": ours_side,
        "baseline": base,
        "tuned": tuned_side,
        "speedup": rate(base["seconds"], ours_side["seconds"]),
        "tokens_per_s_ratio": rate(ours_side["real_tokens_per_s"], base["real_tokens_per_s"]),
        "tokens_per_s_ratio_over_tuned": rate(ours_side["real_tokens_per_s"], tuned_side["real_tokens_per_s"]),
        # Ours minus the other side, per held-out row: negative is better.
        "log_loss_difference": float(difference.mean()),
        "log_loss_difference_se": standard_error(difference),
        "log_loss_difference_over_tuned": float(tuned_difference.mean()),
        "log_loss_difference_over_tuned_se": standard_error(tuned_difference),
    }
    if same_precision and rt.dtype != base_dtype:
        result["ours_same_precision"], _ = ours(base_dtype)
        result["tokens_per_s_ratio_same_precision"] = rate(
            result["ours_same_precision"]["real_tokens_per_s"], base["real_tokens_per_s"]
        )
    return result


def bench_preprocessing(source_csv: Path, rows: int, repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as work:
        table = Path(work) / "train.csv"
        preprocessing.build_table(source_csv, rows, table)
        size_mb = table.stat().st_size / 2**20
        # Best of three fresh processes each: this figure is a few seconds long and the first
        # touch of memory on a virtual machine is noisy.
        ours = min((preprocessing.measure("pipeline", table) for _ in range(repeats)), key=lambda r: r["seconds"])
        base = min((preprocessing.measure("pandas_literal", table) for _ in range(repeats)), key=lambda r: r["seconds"])
    return {
        "rows": rows,
        "source": str(source_csv),
        "csv_mb": size_mb,
        "repeats": repeats,
        "ours": ours,
        "baseline": base,
        "speedup": rate(base["seconds"], ours["seconds"]),
        "peak_memory_ratio": rate(ours["peak_rss_mb"], base["peak_rss_mb"]),
    }


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info | {"versions": package_versions()}


def classifier_run(run: RunConfig) -> RunConfig:
    """The benchmark compares classifiers: the original method had no other head."""
    return dataclasses.replace(run, model=dataclasses.replace(run.model, head="classifier"))


def run_benchmark(
    train_csv: Path,
    checkpoint: Path,
    run: RunConfig,
    quick: bool,
    preprocess_source: Path | None = None,
    gpu_large: bool = True,
    gpu_check: dict | None = None,
) -> dict:
    """`gpu_check`: the figures of `make gpu-check` (gpu_check.json), shown in the GPU section."""
    run = classifier_run(run)
    sizes = Sizes.for_mode(quick)
    started = time.perf_counter()
    # Preprocessing first, in child processes, before this process holds a model in memory.
    source = preprocess_source or train_csv
    log.info("preprocessing %d rows built from %s", sizes.preprocess_rows, source)
    preprocess = bench_preprocessing(source, sizes.preprocess_rows, repeats=1 if quick else 3)

    rt = Runtime.create(run, checkpoint)
    table, _report = preprocess_train(train_csv, n_folds=5, seed=run.train.seed)
    log.info("encoding %d rows", table.height)
    input_ids = rt.encode(table)

    ceilings, ceiling_details = {}, {}
    for dtype in {rt.dtype, rt.predict_dtype, original_dtype(rt)}:
        log.info("measuring the %s matrix-multiply ceiling", dtype)
        ceiling = measure_matmul_ceiling(rt.device, dtype, seconds=sizes.matmul_seconds)
        log.info("matrix-multiply ceiling: %s", ceiling.describe())
        ceilings[dtype_name(dtype)] = ceiling.flops_per_s
        ceiling_details[dtype_name(dtype)] = ceiling.as_dict()

    log.info("inference: ours versus Trainer.predict")
    model = fresh_model(rt, run, checkpoint)
    shape = model_shape(model)
    inference = bench_inference(model, rt, run, input_ids[: sizes.inference_rows], ceilings)
    log.info("measuring the model's dense layers as bare matrix products")
    inference["dense_layer_roof"] = dense_layer_roof(model, rt, run, inference, sizes.matmul_seconds)
    del model

    log.info("training: ours versus Trainer, %d optimizer steps each", sizes.train_steps)
    training = bench_training(rt, run, checkpoint, table, input_ids, sizes, same_precision=not quick, ceilings=ceilings)

    results = {
        "mode": "quick" if quick else "full",
        "machine": machine(),
        "model": {"checkpoint": str(checkpoint), **shape, **rt.describe(), "max_length": run.model.max_length},
        "data": {
            "train_csv": str(train_csv),
            "rows": table.height,
            "mean_tokens": float(np.mean([len(x) for x in input_ids])),
        },
        "matmul_flops_per_s": ceilings,
        "matmul_ceiling": ceiling_details,
        "inference": inference,
        "training": training,
        "preprocessing": preprocess,
    }
    if gpu_large and not quick and torch.cuda.is_available():
        from arenapref.bench.gpu import bench_llama8b_shapes

        results["gpu_llama8b"] = bench_llama8b_shapes(rt, input_ids[: sizes.inference_rows], run)
    if gpu_check is not None:
        results["gpu_check"] = gpu_check
    results["targets"] = check_targets(results)
    results["seconds"] = time.perf_counter() - started
    return results


def dense_layer_roof(model, rt: Runtime, run: RunConfig, inference: dict, seconds: float) -> dict:
    """The rate of the model's own dense layers as bare products, at a batch of the inference token
    budget, in the inference precision: no inference method can run the model faster on this machine.
    Its ratio to the tuned Trainer's rate is the most any method can gain over it here."""
    tokens = run.predict.tokens_per_batch
    roof = dense_layer_rate(dense_layer_shapes(model), tokens, rt.device, rt.predict_dtype, seconds)
    return {
        "tokens": tokens,
        "dtype": dtype_name(rt.predict_dtype),
        "flops_per_s": roof,
        "ours_fraction": inference["ours"]["flops_per_s"] / roof,
        "tuned_fraction": inference["tuned"]["flops_per_s"] / roof,
        "most_over_tuned": roof / inference["tuned"]["flops_per_s"],
    }


# Against the tuned Trainer (group_by_length, bf16 where native, our batch shape; sorted rows for
# prediction): the strongest setup a user of the standard tools would pick.
TARGETS = {
    "inference_tokens_per_s_over_tuned": 1.5,
    # Training runs on transformers.Trainer (fold_trainer.py): the hand-written loop it replaced ran at
    # 0.98x the tuned Trainer, short of 1.3x. What is left to ours is the batching: no slower.
    "training_tokens_per_s_over_tuned": 0.95,
    "inference_fraction_of_matmul_rate": 0.65,
    "padding_efficiency": 0.9,
    "preprocessing_speedup": 5.0,
}
MAX_PREPROCESSING_MEMORY_RATIO = 1.0  # peak memory no higher than the pandas baseline's


def check_targets(results: dict) -> dict:
    inference, training, pre = results["inference"], results["training"], results["preprocessing"]
    measured = {
        "inference_tokens_per_s_over_tuned": inference["speedup_over_tuned"],
        "training_tokens_per_s_over_tuned": training["tokens_per_s_ratio_over_tuned"],
        "inference_fraction_of_matmul_rate": inference["ours"]["fraction_of_matmul_rate"],
        "padding_efficiency": min(inference["ours"]["padding_efficiency"], training["ours"]["padding_efficiency"]),
        "preprocessing_speedup": pre["speedup"],
    }
    checks = {
        name: {"target": TARGETS[name], "measured": value, "met": value >= TARGETS[name]}
        for name, value in measured.items()
    }
    checks["preprocessing_peak_memory_ratio"] = {
        "target": f"<= {MAX_PREPROCESSING_MEMORY_RATIO}",
        "measured": pre["peak_memory_ratio"],
        "met": pre["peak_memory_ratio"] <= MAX_PREPROCESSING_MEMORY_RATIO,
    }
    # Paired over the held-out rows; the tolerance is the larger of 0.01 and two standard errors.
    # The whole-fold comparison (--oof-comparison) is the stronger test of "learns as well".
    tolerance = max(0.01, 2 * training["log_loss_difference_over_tuned_se"])
    checks["training_held_out_log_loss_vs_tuned"] = {
        "target": f"ours - tuned <= {tolerance:.3f}",
        "measured": training["log_loss_difference_over_tuned"],
        "met": training["log_loss_difference_over_tuned"] <= tolerance,
    }
    return checks
