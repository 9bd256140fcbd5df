"""Training one fold's LoRA adapter, on a transformers.Trainer (arenapref.train.fold_trainer).

Kept from the original method: batches of rows of similar length, processed in chunks, with the
adapter checkpointed after each chunk. Fixed: the order is the Trainer's length-grouped sampler's
(random blocks, each sorted, the longest batch first) rather than shortest to longest, one
optimizer and one learning-rate schedule run across all chunks (the original restarted the
schedule every chunk), every fold starts from a fresh adapter (the original kept training one
model across folds, so fold k's adapter had seen fold k's validation rows), and an interrupted fold
resumes at its last finished chunk.

The loop is the Trainer's: our own loop measured 0.98x a well-configured Trainer's real tokens/s
(SmolLM2-135M, 2 CPU cores), so writing it bought nothing, while the Trainer brings reporting
(train.report_to: TensorBoard, MLflow) and accelerate's device and multi-GPU handling. What stays
ours: the length-grouped batches in chunks, the heads' losses, the optimizer and schedule over
the whole fold, the per-chunk seed, and the resume points (arenapref.train.checkpointing: adapter,
optimizer, schedule, fp16 loss scale, history), saved after each chunk, not the Trainer's
checkpoint folders.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from arenapref.config import TrainSettings
from arenapref.errors import CheckpointError, ConfigError
from arenapref.model.batching import length_grouped_chunks, paired_chunks
from arenapref.train.checkpointing import (
    CorruptCheckpoint,
    ResumePoint,
    clear_resume_state,
    load_resume_point,
    save_resume_point,
)

log = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    history: list[dict]
    optimizer_steps: int
    resumed_from_chunk: int
    seconds: float  # training time over all runs, including those before a resume
    session_seconds: float  # this run only, the time `tokens` took
    tokens: int  # real tokens processed (this run, not counting chunks done before a resume)
    tokens_computed: int  # the same plus padding


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise CorruptCheckpoint(f"checkpoint has parameters the model lacks: {missing[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def is_head_parameter(name: str) -> bool:
    """The classification layer: peft trains and saves it as a modules_to_save copy of `score`."""
    return ".score." in f".{name}."


def parameter_groups(named_parameters, settings: TrainSettings) -> list:
    """What the optimizer updates: one group at train.learning_rate, or with train.head_learning_rate
    the classification layer in a second group at that rate (after the body's, so the rate the
    Trainer logs, its first group's, stays the adapter's)."""
    named = list(named_parameters)
    if settings.head_learning_rate is None:
        return [p for _, p in named]
    head = [p for name, p in named if is_head_parameter(name)]
    if not head:
        log.warning(
            "train.head_learning_rate %g is ignored: this model has no separate classification layer (the sft "
            "head scores with the language model's own output layer, which stays frozen)",
            settings.head_learning_rate,
        )
        return [p for _, p in named]
    body = [p for name, p in named if not is_head_parameter(name)]
    groups = [{"params": body}] if body else []
    return groups + [{"params": head, "lr": settings.head_learning_rate}]


def make_optimizer(named_parameters, settings: TrainSettings, device: torch.device):
    """The optimizer over the trainable (name, parameter) pairs; a group's own rate wins over
    train.learning_rate, and the schedule scales every group by the same factor."""
    params = parameter_groups(named_parameters, settings)
    name = settings.optimizer
    if name == "auto":
        name = "adamw_8bit" if device.type == "cuda" else "adamw"
    if name == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up then linear decay to zero, over the whole fold (all chunks, all epochs)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def plan_steps(chunks: Sequence[Sequence[np.ndarray]], settings: TrainSettings) -> list[int]:
    """Optimizer steps per chunk; a chunk's last partial accumulation group still steps."""
    return [math.ceil(len(batches) / settings.grad_accum) for batches in chunks]


def cap_steps(chunks: list[list[np.ndarray]], settings: TrainSettings, max_steps: int) -> list[list[np.ndarray]]:
    """The chunks cut after `max_steps` optimizer steps (the sampler's blocks are random draws, so
    the rows seen are a random share of the epoch)."""
    capped, steps = [], 0
    for batches in chunks:
        room = (max_steps - steps) * settings.grad_accum
        if room <= 0:
            break
        capped.append(batches[:room])
        steps += math.ceil(len(capped[-1]) / settings.grad_accum)
    return capped


def training_chunks(lengths: Sequence[int], settings: TrainSettings) -> list[list[np.ndarray]]:
    """The fold's batches in training order, cut into resumable chunks; with swap augmentation
    `pair` each batch holds rows and their swapped copies (the rows' second half, training_rows)."""
    chunking = paired_chunks if settings.swap_augmentation == "pair" else length_grouped_chunks
    return chunking(lengths, settings.batch_size, settings.chunk_size, settings.epochs, settings.seed)


def fold_steps(rows: int, settings: TrainSettings) -> int:
    """Optimizer steps a fold trains for on `rows` rows (they depend on the count alone)."""
    chunks = training_chunks([0] * rows, settings)
    return sum(plan_steps(chunks, settings))


@dataclass(frozen=True)
class Examples:
    """What a fold trains on: token ids and labels of each row, and the padding id; `soft_labels`
    a teacher's three probabilities a row (NaN where it has none; NO_LABEL rows have only those),
    None when the fold trains on winners alone."""

    input_ids: Sequence[Sequence[int]]
    labels: Sequence[int]
    pad_id: int
    soft_labels: Sequence[Sequence[float]] | None = None


@dataclass
class Progress:
    """Where a fold's training stands: what a resume point saves and restores."""

    chunks_done: int = 0
    steps_done: int = 0
    history: list[dict] = field(default_factory=list)
    earlier_seconds: float = 0.0  # training time of the runs before this one


# train.report_to's backends: optional packages (pyproject's `report` extra; requirements.txt pins
# them), by the modules each needs. MLflow keeps its runs in SQLite: MLflow 3 refuses file stores.
REPORT_BACKENDS = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow", "sqlalchemy", "alembic")}
REPORT_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny sqlalchemy alembic"}
MLFLOW_EXPERIMENT = "arenapref"


def _missing_backend(report_to: str) -> ConfigError:
    return ConfigError(
        f"train.report_to: {report_to} needs {REPORT_PACKAGES[report_to]}, not all installed: pip install "
        f"{REPORT_PACKAGES[report_to]} (at requirements.txt's pins), or set train.report_to: none"
    )


def require_report_backend(report_to: str) -> None:
    """Stop with one line, before any model loads, when train.report_to's backend is not installed."""
    if any(importlib.util.find_spec(module) is None for module in REPORT_BACKENDS.get(report_to, ())):
        raise _missing_backend(report_to)


def use_mlflow_store(store: Path) -> None:
    """MLflow's tracking store for this process: an SQLite database in `store`, one per fold (folds
    training side by side would contend for a shared one)."""
    try:
        import mlflow
    except ImportError as err:
        raise _missing_backend("mlflow") from err
    store.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{(store / 'mlflow.db').resolve()}")
    if mlflow.get_experiment_by_name(MLFLOW_EXPERIMENT) is None:
        # Its artifact folder (nothing is logged there) would otherwise be ./mlruns of the working directory.
        mlflow.create_experiment(MLFLOW_EXPERIMENT, artifact_location=(store / "artifacts").resolve().as_uri())
    mlflow.set_experiment(MLFLOW_EXPERIMENT)


def last_resume_point(resume_dir: Path, identity: dict[str, str]) -> ResumePoint | None:
    """The last resume point of this config and data, if any; unreadable state is retrained."""
    try:
        return load_resume_point(resume_dir, identity)
    except CorruptCheckpoint as err:
        log.warning("resume state is unreadable, retraining this fold from the start: %s", err)
        clear_resume_state(resume_dir)
        return None


def save_chunk(resume_dir: Path, identity: dict[str, str], progress: Progress, seconds: float, model, trainer) -> None:
    """A resume point after a finished chunk; a failed save leaves the previous one intact."""
    point = ResumePoint(
        chunks_done=progress.chunks_done,
        optimizer_steps=progress.steps_done,
        history=progress.history,
        adapter=trainable_state(model),
        optimizer=trainer.optimizer.state_dict(),
        scheduler=trainer.lr_scheduler.state_dict(),
        seconds=seconds,
        scaler=trainer.scaler.state_dict() if trainer.scaler is not None else None,
    )
    try:
        save_resume_point(resume_dir, identity, point)
    except OSError as err:  # a full disk, most often; the previous checkpoint is untouched
        raise CheckpointError(
            f"could not save the checkpoint after chunk {progress.chunks_done} to {resume_dir}: "
            f"{err.strerror or err}; the last saved chunk ({progress.chunks_done - 1}) is intact and a rerun "
            "resumes there"
        ) from err


def train_adapter(
    model,
    examples: Examples,
    settings: TrainSettings,
    device: torch.device,
    dtype: torch.dtype,
    resume_dir: Path,
    identity: dict[str, str],
    head=None,
    max_steps: int | None = None,
    report_dir: Path | None = None,
) -> TrainingResult:
    """Train the trainable parameters of `model` (a fresh LoRA adapter) in place, resuming at the
    last saved chunk of the same config and data. `head` (default: the classifier) builds the
    batches and computes the loss; `max_steps` caps the optimizer steps (and the schedule with them).
    `dtype` is the autocast dtype (fp16 with a loss scaler). With `report_dir`, the steps also go to
    train.report_to's backend there."""
    # Imported here: transformers' Trainer loads when training starts, not with this module (the benchmark
    # and the GPU check import it for its helpers).
    from arenapref.train.fold_trainer import ChunkCallback, FoldTrainer, fold_arguments, grouped_batches

    if head is None:
        from arenapref.model.heads import ClassifierHead

        head = ClassifierHead()
    started = time.perf_counter()
    chunks = training_chunks([len(x) for x in examples.input_ids], settings)
    if max_steps is not None:
        chunks = cap_steps(chunks, settings, max_steps)
    chunk_ends = list(itertools.accumulate(plan_steps(chunks, settings)))
    total_steps = chunk_ends[-1] if chunk_ends else 0
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    for _, p in trainable:
        # Adapter and head train in fp32 even when the frozen base computes in bf16/fp16.
        p.data = p.data.float()
    optimizer = make_optimizer(trainable, settings, device)
    scheduler = linear_schedule(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    point = last_resume_point(resume_dir, identity)
    progress = Progress()
    if point is not None:
        load_trainable_state(model, point.adapter)
        optimizer.load_state_dict(point.optimizer)
        scheduler.load_state_dict(point.scheduler)
        progress = Progress(point.chunks_done, point.optimizer_steps, point.history, point.seconds)
        log.info(
            "resuming after chunk %d of %d (optimizer step %d)", point.chunks_done, len(chunks), point.optimizer_steps
        )
    resumed_from = progress.chunks_done
    tokens_seen = tokens_computed = 0
    if progress.chunks_done < len(chunks):
        report_to = settings.report_to if report_dir is not None else "none"
        require_report_backend(report_to)
        if report_to == "mlflow":
            use_mlflow_store(report_dir)
        trainer = FoldTrainer(
            model=model,
            args=fold_arguments(
                settings, device, dtype, report_dir or resume_dir, report_to, total_steps - progress.steps_done
            ),
            train_dataset=range(len(examples.labels)),
            optimizers=(optimizer, scheduler),
            examples=examples,
            head=head,
            batches=grouped_batches(chunks[progress.chunks_done :], settings.grad_accum),
            dtype=dtype,
            smoothing=settings.label_smoothing,
            distill_weight=settings.distill_weight,
            steps_before=progress.steps_done,
        )
        if point is not None and trainer.scaler is not None:
            if point.scaler:
                trainer.scaler.load_state_dict(point.scaler)
            else:
                log.warning("the resume point has no gradient-scaler state; fp16 loss scaling starts afresh")

        def save(chunks_done: int) -> None:
            progress.chunks_done, progress.steps_done = chunks_done, chunk_ends[chunks_done - 1]
            seconds = progress.earlier_seconds + time.perf_counter() - started
            save_chunk(resume_dir, identity, progress, seconds, model, trainer)

        trainer.add_callback(ChunkCallback(trainer, chunk_ends, progress.history, settings.seed, save))
        trainer.train()
        tokens_seen, tokens_computed = trainer.tokens_seen, trainer.tokens_computed
    model.eval()
    session_seconds = time.perf_counter() - started
    return TrainingResult(
        history=progress.history,
        optimizer_steps=progress.steps_done,
        resumed_from_chunk=resumed_from,
        seconds=progress.earlier_seconds + session_seconds,
        session_seconds=session_seconds,
        tokens=tokens_seen,
        tokens_computed=tokens_computed,
    )
