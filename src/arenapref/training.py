"""Training one fold's LoRA adapter: the whole loop lives here.

Kept from the original method: rows sorted by length (into batches of similar length) and
processed in chunks, with the adapter checkpointed after each chunk. Fixed: batches are visited in
a seeded random order rather than shortest to longest, one optimizer and one learning-rate schedule run across
all chunks (the original restarted the schedule every chunk), every fold starts from a fresh
adapter (the original kept training one model across folds, so fold k's adapter had seen fold
k's validation rows), and an interrupted fold resumes at its last finished chunk.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from arenapref.batching import length_bucketed_chunks
from arenapref.checkpointing import (
    CorruptCheckpoint,
    ResumePoint,
    clear_resume_state,
    load_resume_point,
    save_resume_point,
)
from arenapref.config import TrainSettings
from arenapref.errors import CheckpointError
from arenapref.modeling import needs_grad_scaler

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


def make_optimizer(params, settings: TrainSettings, device: torch.device):
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
    """The chunks cut after `max_steps` optimizer steps (batches are in random order, so the rows
    seen are a random share of the epoch)."""
    capped, steps = [], 0
    for batches in chunks:
        room = (max_steps - steps) * settings.grad_accum
        if room <= 0:
            break
        capped.append(batches[:room])
        steps += math.ceil(len(capped[-1]) / settings.grad_accum)
    return capped


def fold_steps(rows: int, settings: TrainSettings) -> int:
    """Optimizer steps a fold trains for on `rows` rows (they depend on the count alone)."""
    chunks = length_bucketed_chunks(
        [0] * rows, settings.batch_size, settings.chunk_size, settings.epochs, settings.seed
    )
    return sum(plan_steps(chunks, settings))


@dataclass(frozen=True)
class Examples:
    """What a fold trains on: token ids and labels of each row, and the padding id."""

    input_ids: Sequence[Sequence[int]]
    labels: Sequence[int]
    pad_id: int


@dataclass
class Progress:
    """Where a fold's training stands: what a resume point saves and restores."""

    chunks_done: int = 0
    steps_done: int = 0
    history: list[dict] = field(default_factory=list)
    earlier_seconds: float = 0.0  # training time of the runs before this one


@dataclass
class Trainer:
    """The optimizer, schedule and gradient scaler of one fold's adapter, and its resume folder."""

    model: torch.nn.Module
    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    resume_dir: Path
    identity: dict[str, str]

    def restore(self, chunks: int) -> Progress:
        """The last resume point of this config and data, or a fresh start; unreadable state is retrained."""
        try:
            point = load_resume_point(self.resume_dir, self.identity)
        except CorruptCheckpoint as err:
            log.warning("resume state is unreadable, retraining this fold from the start: %s", err)
            clear_resume_state(self.resume_dir)
            point = None
        if point is None:
            return Progress()
        load_trainable_state(self.model, point.adapter)
        self.optimizer.load_state_dict(point.optimizer)
        self.scheduler.load_state_dict(point.scheduler)
        if self.scaler.is_enabled():
            if point.scaler:
                self.scaler.load_state_dict(point.scaler)
            else:
                log.warning("the resume point has no gradient-scaler state; fp16 loss scaling starts afresh")
        log.info("resuming after chunk %d of %d (optimizer step %d)", point.chunks_done, chunks, point.optimizer_steps)
        return Progress(
            chunks_done=point.chunks_done,
            steps_done=point.optimizer_steps,
            history=point.history,
            earlier_seconds=point.seconds,
        )

    def step(
        self,
        head,
        examples: Examples,
        group: Sequence[np.ndarray],
        device: torch.device,
        dtype: torch.dtype,
        settings: TrainSettings,
    ) -> tuple[dict, int, int]:
        """One optimizer step over an accumulation group of batches: its log entry, real and padded tokens."""
        rows_in_group = sum(len(b) for b in group)
        # Summed on the device and read once per optimizer step: a read per micro-batch would make
        # the CPU wait for the GPU every time.
        step_loss = torch.zeros((), device=device)
        real = computed = 0
        for batch in group:
            tensors = head.collate(
                [examples.input_ids[i] for i in batch], [examples.labels[i] for i in batch], examples.pad_id
            )
            real += int(tensors["attention_mask"].sum())  # counted on the CPU copy
            computed += tensors["attention_mask"].numel()
            tensors = {name: value.to(device, non_blocking=True) for name, value in tensors.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = head.loss(self.model, tensors, settings.label_smoothing)
            weighted = loss * len(batch) / rows_in_group  # a short last batch counts for what it holds
            self.scaler.scale(weighted).backward()
            step_loss += weighted.detach()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, settings.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        entry = {
            "loss": round(float(step_loss), 6),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": round(float(grad_norm), 6),
        }
        if self.scaler.is_enabled():
            entry["loss_scale"] = self.scaler.get_scale()
        return entry, real, computed

    def save(self, progress: Progress, seconds: float) -> None:
        """A resume point after a finished chunk; a failed save leaves the previous one intact."""
        point = ResumePoint(
            chunks_done=progress.chunks_done,
            optimizer_steps=progress.steps_done,
            history=progress.history,
            adapter=trainable_state(self.model),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            seconds=seconds,
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
        )
        try:
            save_resume_point(self.resume_dir, self.identity, point)
        except OSError as err:  # a full disk, most often; the previous checkpoint is untouched
            raise CheckpointError(
                f"could not save the checkpoint after chunk {progress.chunks_done} to {self.resume_dir}: "
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
) -> TrainingResult:
    """Train the trainable parameters of `model` (a fresh LoRA adapter) in place, resuming at the
    last saved chunk of the same config and data. `head` (default: the classifier) builds the
    batches and computes the loss; `max_steps` caps the optimizer steps (and the schedule with them)."""
    if head is None:
        from arenapref.heads import ClassifierHead

        head = ClassifierHead()
    started = time.perf_counter()
    chunks = length_bucketed_chunks(
        [len(x) for x in examples.input_ids], settings.batch_size, settings.chunk_size, settings.epochs, settings.seed
    )
    if max_steps is not None:
        chunks = cap_steps(chunks, settings, max_steps)
    total_steps = sum(plan_steps(chunks, settings))
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        # Adapter and head train in fp32 even when the frozen base computes in bf16/fp16.
        p.data = p.data.float()
    optimizer = make_optimizer(trainable, settings, device)
    trainer = Trainer(
        model=model,
        trainable=trainable,
        optimizer=optimizer,
        scheduler=linear_schedule(optimizer, int(settings.warmup_ratio * total_steps), total_steps),
        scaler=torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(dtype)),
        resume_dir=resume_dir,
        identity=identity,
    )
    progress = trainer.restore(len(chunks))
    resumed_from = progress.chunks_done
    tokens_seen = tokens_computed = 0
    model.train()
    bar = tqdm(
        total=total_steps,
        initial=progress.steps_done,
        desc="train",
        unit="step",
        file=sys.stderr,
        mininterval=1.0 if sys.stderr.isatty() else 15.0,
    )
    for chunk_index in range(progress.chunks_done, len(chunks)):
        # Seeding per chunk makes dropout and batch order the same whether or not the run resumed.
        torch.manual_seed(settings.seed + chunk_index)
        batches = chunks[chunk_index]
        for start in range(0, len(batches), settings.grad_accum):
            entry, real, computed = trainer.step(
                head, examples, batches[start : start + settings.grad_accum], device, dtype, settings
            )
            tokens_seen, tokens_computed = tokens_seen + real, tokens_computed + computed
            progress.steps_done += 1
            progress.history.append({"step": progress.steps_done, "chunk": chunk_index, **entry})
            bar.update(1)
            bar.set_postfix(loss=f"{entry['loss']:.4f}", chunk=f"{chunk_index + 1}/{len(chunks)}")
        progress.chunks_done = chunk_index + 1
        trainer.save(progress, progress.earlier_seconds + time.perf_counter() - started)
    bar.close()
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
