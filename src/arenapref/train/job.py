"""The training rule's job (`arenapref-train-fold`, rules/train.smk): one fold's rows, the memory plan
checked before anything loads, a fresh adapter trained and published with a training log."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import torch

from arenapref.config import RunConfig
from arenapref.data.augment import swap_responses
from arenapref.data.extra import extra_training_rows
from arenapref.data.parsing import NO_LABEL
from arenapref.data.soft_labels import TEACHER_COLUMNS
from arenapref.errors import ConfigError, DeviceError
from arenapref.io import atomic_dir, dir_sha256, stable_hash, write_json_atomic
from arenapref.model.modeling import (
    attach_new_adapter,
    checkpointing_choice,
    enable_gradient_checkpointing,
    lora_layer_indices,
)
from arenapref.model.plan import CUDA_CONTEXT_BYTES
from arenapref.model.runtime import Runtime, measured_peak, package_versions
from arenapref.train.training import Examples, fold_steps, require_report_backend, train_adapter

log = logging.getLogger(__name__)


def plan_training_memory(rt: Runtime, run: RunConfig, checkpoint: Path, longest: int) -> dict:
    """The memory plan of this fold's training (at its longest batch), before any weight is loaded.
    It first settles gradient checkpointing where `auto` left it open (rt.gradient_checkpointing
    None): off where the step fits the free memory without it. On a GPU it stops when the plan does
    not fit the free memory, naming settings that would."""
    from arenapref.model.plan import (
        GIB,
        Arithmetic,
        ModelShape,
        describe_change,
        fits,
        settings_that_fit,
        training_memory,
    )

    shape = ModelShape.from_checkpoint(checkpoint, run)
    arith = Arithmetic(rt.device.type, rt.dtype.itemsize, rt.quantization)
    free = total = None
    if rt.device.type == "cuda":
        free, total = torch.cuda.mem_get_info(rt.device)
    if rt.gradient_checkpointing is None:
        without = training_memory(shape, run, arith, False, run.train.batch_size, longest)["peak"]
        rt.gradient_checkpointing, reason = checkpointing_choice(
            run.train.gradient_checkpointing, rt.device.type, without, free
        )
    else:
        reason = f"train.gradient_checkpointing {str(run.train.gradient_checkpointing).lower()} on {rt.device.type}"
    log.info("gradient checkpointing %s: %s", "on" if rt.gradient_checkpointing else "off", reason)
    planned = training_memory(shape, run, arith, rt.gradient_checkpointing, run.train.batch_size, longest)
    log.info(
        "memory plan: %.2f GiB at the peak of a training step (%s)",
        planned["peak"] / GIB,
        ", ".join(f"{name} {value / GIB:.2f}" for name, value in planned.items() if name != "peak"),
    )
    if rt.device.type == "cuda":
        # The CUDA context already holds its share of `total - free`: compare with what is free.
        if not fits(planned["peak"], free + CUDA_CONTEXT_BYTES):
            change = settings_that_fit(shape, run, arith, free + CUDA_CONTEXT_BYTES, rt.gradient_checkpointing)
            raise DeviceError(
                f"training would need about {planned['peak'] / GIB:.1f} GiB at its peak ({run.train.batch_size} rows "
                f"x {longest} tokens, gradient checkpointing {'on' if rt.gradient_checkpointing else 'off'}) but "
                f"{free / GIB:.1f} of {total / GIB:.1f} GiB are free on {rt.gpu.get('name', rt.device)}; settings "
                f"that fit: {describe_change(change)}"
            )
    return {name: round(value / GIB, 3) for name, value in planned.items()}


def training_rows(
    table: pl.DataFrame, fold: int | None, swap_augmentation: bool | str, extra: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The rows that train `fold`'s adapter: every row outside the fold (every row for the full
    fit, fold None), then the extra rows (data.extra_train) that may train it, and with swap
    augmentation their swapped copies after them, in the same order (row i's copy is row n + i). A
    copy is made only from a training row, so it never carries a validation row's conversation
    into training."""
    rows = table if fold is None else table.filter(pl.col("fold") != fold)
    if rows.height == 0:
        raise ValueError(f"fold {fold}: no training rows (folds present: {sorted(table['fold'].unique())})")
    if extra is not None and extra.height:
        more = extra_training_rows(extra, fold)
        columns = [c for c in rows.columns if c in more.columns]
        rows = pl.concat([rows.select(columns), more.select(columns)], how="vertical_relaxed")
    return pl.concat([rows, swap_responses(rows)]) if swap_augmentation else rows


def teacher_probabilities(rows: pl.DataFrame, run: RunConfig) -> list[list[float]] | None:
    """The teacher's three probabilities a row (NaN where none) when the loss uses them: with
    train.distill_weight above 0, or for rows without a winner; None keeps the winners-only loss."""
    if not set(TEACHER_COLUMNS) <= set(rows.columns):
        return None
    unlabelled = bool((rows["label"] == NO_LABEL).any())
    if run.train.distill_weight == 0 and not unlabelled:
        return None
    if run.model.head != "classifier":
        raise ConfigError(
            "a teacher's probabilities (data.soft_labels) train the classifier head; set model.head: classifier"
        )
    return rows.select(pl.col(c).fill_null(float("nan")) for c in TEACHER_COLUMNS).to_numpy().tolist()


def train_fold(
    data_path: Path,
    fold: int | None,
    checkpoint: Path,
    run: RunConfig,
    adapter_dir: Path,
    log_path: Path,
    resume_dir: Path,
    extra_path: Path | None = None,
) -> dict:
    """Train a fresh adapter on every row outside `fold` (and the extra rows that may train it);
    write the adapter and a training log.

    fold None is the full fit: every row, for as many optimizer steps as a fold takes (fold 0's),
    so it costs a fold's time and follows a fold's learning-rate schedule."""
    require_report_backend(run.train.report_to)  # before anything loads
    if run.train.swap_augmentation == "pair" and run.train.batch_size % 2:
        raise ConfigError(
            f"train.swap_augmentation: pair puts a row and its swap in one batch: train.batch_size must be even, "
            f"not {run.train.batch_size}"
        )
    table = pl.read_parquet(data_path)
    extra = pl.read_parquet(extra_path) if extra_path is not None else None
    train_rows = training_rows(table, fold, run.train.swap_augmentation, extra)
    source_rows = table.height if fold is None else table.filter(pl.col("fold") != fold).height
    extra_rows = 0 if extra is None else extra_training_rows(extra, fold).height
    max_steps = None
    if fold is None:
        max_steps = fold_steps(training_rows(table, 0, run.train.swap_augmentation, extra).height, run.train)
    soft_labels = teacher_probabilities(train_rows, run)
    rt = Runtime.create(run, checkpoint)
    input_ids = rt.encode(train_rows)
    labels = train_rows["label"].to_list()
    identity = {
        "config": run.training_hash(),
        "data": stable_hash([train_rows["id"].to_list(), labels] + ([soft_labels] if soft_labels else [])),
        "checkpoint": str(Path(checkpoint).resolve()),
    }
    memory_plan = plan_training_memory(rt, run, checkpoint, max(len(x) for x in input_ids))
    torch.manual_seed(run.train.seed)  # the classification head's initial weights
    model = attach_new_adapter(rt.base_model(run, checkpoint), run.model)
    if rt.gradient_checkpointing:
        enable_gradient_checkpointing(model, lora_layer_indices(model.config.num_hidden_layers, run.model.lora.layers))
    result = train_adapter(
        model,
        Examples(input_ids, labels, rt.tokenizer.pad_token_id, soft_labels),
        run.train,
        rt.device,
        rt.dtype,
        resume_dir,
        identity,
        head=rt.head,
        max_steps=max_steps,
        # Beside the training log: results/folds/<fold>/tensorboard or .../mlflow.
        report_dir=None if run.train.report_to == "none" else log_path.parent / run.train.report_to,
    )
    with atomic_dir(adapter_dir) as staging:
        model.save_pretrained(staging, safe_serialization=True)
    lengths = np.array([len(x) for x in input_ids])
    summary = {
        "fold": "full" if fold is None else fold,
        "rows": train_rows.height,
        "source_rows": source_rows,
        "extra_rows": extra_rows,
        "rows_with_teacher": 0 if soft_labels is None else int(sum(p[0] == p[0] for p in soft_labels)),  # not NaN
        "distill_weight": run.train.distill_weight,
        "swap_augmentation": run.train.swap_augmentation,
        "tokens_per_row": {"mean": float(lengths.mean()), "max": int(lengths.max())},
        "max_length": run.model.max_length,
        "optimizer_steps": result.optimizer_steps,
        "resumed_from_chunk": result.resumed_from_chunk,
        "seconds": round(result.seconds, 2),
        "seconds_this_run": round(result.session_seconds, 2),
        "tokens_per_second": round(result.tokens / max(result.session_seconds, 1e-9), 1),
        "padding_efficiency": round(result.tokens / max(result.tokens_computed, 1), 4),
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "config_hash": run.training_hash(),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": dir_sha256(checkpoint),
        "adapter_sha256": dir_sha256(adapter_dir),
        "data_sha256": identity["data"],
        "runtime": rt.describe(),
        "memory_gib": {"planned": memory_plan, **measured_peak(rt.device)},
        "versions": package_versions(),
        "history": result.history,
    }
    write_json_atomic(log_path, summary)
    shutil.rmtree(resume_dir, ignore_errors=True)  # the adapter is published; resume state is spent
    return summary
