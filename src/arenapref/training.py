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
from dataclasses import dataclass
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
    chunks = length_bucketed_chunks([0] * rows, settings.batch_size, settings.chunk_size, settings.epochs,
                                    settings.seed)
    return sum(plan_steps(chunks, settings))


def train_adapter(
    model,
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    settings: TrainSettings,
    device: torch.device,
    dtype: torch.dtype,
    pad_id: int,
    resume_dir: Path,
    identity: dict[str, str],
    head=None,
    max_steps: int | None = None,
) -> TrainingResult:
    """Train the trainable parameters of `model` (a fresh LoRA adapter) in place; `head` (default:
    the classifier) builds the batches and computes the loss; `max_steps` caps the optimizer steps
    (and the learning-rate schedule with them)."""
    if head is None:
        from arenapref.heads import ClassifierHead

        head = ClassifierHead()
    started = time.perf_counter()
    chunks = length_bucketed_chunks([len(x) for x in input_ids], settings.batch_size, settings.chunk_size,
                                    settings.epochs, settings.seed)
    if max_steps is not None:
        chunks = cap_steps(chunks, settings, max_steps)
    steps_per_chunk = plan_steps(chunks, settings)
    total_steps = sum(steps_per_chunk)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        # Adapter and head train in fp32 even when the frozen base computes in bf16/fp16.
        p.data = p.data.float()
    optimizer = make_optimizer(trainable, settings, device)
    scheduler = linear_schedule(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    use_autocast = dtype != torch.float32
    scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(dtype))

    history: list[dict] = []
    chunks_done = steps_done = 0
    earlier_seconds = 0.0
    try:
        point = load_resume_point(resume_dir, identity)
    except CorruptCheckpoint as err:
        log.warning("resume state is unreadable, retraining this fold from the start: %s", err)
        clear_resume_state(resume_dir)
        point = None
    if point is not None:
        load_trainable_state(model, point.adapter)
        optimizer.load_state_dict(point.optimizer)
        scheduler.load_state_dict(point.scheduler)
        chunks_done, steps_done, history = point.chunks_done, point.optimizer_steps, point.history
        earlier_seconds = point.seconds
        if scaler.is_enabled():
            if point.scaler:
                scaler.load_state_dict(point.scaler)
            else:
                log.warning("the resume point has no gradient-scaler state; fp16 loss scaling starts afresh")
        log.info("resuming after chunk %d of %d (optimizer step %d)", chunks_done, len(chunks), steps_done)
    resumed_from = chunks_done

    tokens_seen = tokens_computed = 0
    model.train()
    progress = tqdm(total=total_steps, initial=steps_done, desc="train", unit="step", file=sys.stderr,
                    mininterval=1.0 if sys.stderr.isatty() else 15.0)
    for chunk_index in range(chunks_done, len(chunks)):
        # Seeding per chunk makes dropout and batch order the same whether or not the run resumed.
        torch.manual_seed(settings.seed + chunk_index)
        batches = chunks[chunk_index]
        groups = [batches[i : i + settings.grad_accum] for i in range(0, len(batches), settings.grad_accum)]
        for group in groups:
            rows_in_group = sum(len(b) for b in group)
            # Summed on the device and read once per optimizer step: a read per micro-batch would
            # make the CPU wait for the GPU every time.
            step_loss = torch.zeros((), device=device)
            for batch in group:
                tensors = head.collate([input_ids[i] for i in batch], [labels[i] for i in batch], pad_id)
                tokens_seen += int(tensors["attention_mask"].sum())  # counted on the CPU copy
                tokens_computed += tensors["attention_mask"].numel()
                tensors = {name: value.to(device, non_blocking=True) for name, value in tensors.items()}
                with torch.autocast(device.type, dtype=dtype, enabled=use_autocast):
                    loss = head.loss(model, tensors, settings.label_smoothing)
                # Weight by rows so a short last batch counts for what it holds.
                weighted = loss * len(batch) / rows_in_group
                scaler.scale(weighted).backward()
                step_loss += weighted.detach()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            steps_done += 1
            step_loss = float(step_loss)
            history.append({
                "step": steps_done,
                "chunk": chunk_index,
                "loss": round(step_loss, 6),
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": round(float(grad_norm), 6),
                **({"loss_scale": scaler.get_scale()} if scaler.is_enabled() else {}),
            })
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.4f}", chunk=f"{chunk_index + 1}/{len(chunks)}")
        try:
            save_resume_point(
                resume_dir,
                identity,
                ResumePoint(chunk_index + 1, steps_done, history, trainable_state(model),
                            optimizer.state_dict(), scheduler.state_dict(),
                            earlier_seconds + time.perf_counter() - started,
                            scaler.state_dict() if scaler.is_enabled() else None),
            )
        except OSError as err:  # a full disk, most often; the previous checkpoint is untouched
            raise CheckpointError(
                f"could not save the checkpoint after chunk {chunk_index + 1} to {resume_dir}: "
                f"{err.strerror or err}; the last saved chunk ({chunk_index}) is intact and a rerun resumes there"
            ) from err
    progress.close()
    model.eval()
    session_seconds = time.perf_counter() - started
    return TrainingResult(history, steps_done, resumed_from, earlier_seconds + session_seconds, session_seconds,
                          tokens_seen, tokens_computed)
