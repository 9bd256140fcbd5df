"""Resume state for chunked training.

After every chunk the adapter, the optimizer and the schedule are saved to a fresh directory,
which is then published by rewriting `latest.json` atomically; only then are older chunk
directories removed. A crash (or a full disk) in the middle of a save therefore leaves the
previous checkpoint intact. The state lives outside Snakemake's declared outputs, which
Snakemake deletes when a job fails.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from arenapref.io import read_json, write_json_atomic

log = logging.getLogger(__name__)

LATEST = "latest.json"


@dataclass
class ResumePoint:
    chunks_done: int
    optimizer_steps: int
    history: list[dict[str, Any]]
    adapter: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    seconds: float = 0.0  # training time spent up to this point, over all runs
    scaler: dict[str, Any] | None = None  # fp16's gradient scaler: its scale grows over thousands of steps


class CorruptCheckpoint(RuntimeError):
    pass


def save_resume_point(root: Path, identity: dict[str, str], point: ResumePoint) -> None:
    root.mkdir(parents=True, exist_ok=True)
    name = f"chunk-{point.chunks_done:05d}"
    staging = root / f"{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in point.adapter.items()}, staging / "adapter.safetensors")
        torch.save(
            {"optimizer": point.optimizer, "scheduler": point.scheduler, "scaler": point.scaler},
            staging / "optimizer.pt",
        )
        meta = {
            "chunks_done": point.chunks_done,
            "optimizer_steps": point.optimizer_steps,
            "history": point.history,
            "seconds": point.seconds,
        }
        (staging / "state.json").write_text(json.dumps(meta))
        final = root / name
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_json_atomic(root / LATEST, {**identity, "directory": name})
    for old in root.glob("chunk-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def load_resume_point(root: Path, identity: dict[str, str]) -> ResumePoint | None:
    """The last saved point for this exact config and data, None if there is none.

    Raises CorruptCheckpoint when a saved point exists but cannot be read.
    """
    latest = root / LATEST
    if not latest.exists():
        return None
    try:
        pointer = read_json(latest)
    except (OSError, ValueError) as err:
        raise CorruptCheckpoint(f"{latest}: {err}") from err
    if any(pointer.get(k) != v for k, v in identity.items()):
        log.info("resume state in %s belongs to another config or data; starting this fold afresh", root)
        return None
    directory = root / pointer["directory"]
    try:
        meta = json.loads((directory / "state.json").read_text())
        adapter = load_file(directory / "adapter.safetensors")
        # weights_only: the file is the pipeline's own, but never unpickle arbitrary objects.
        states = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or garbled file shows up as many exception types
        raise CorruptCheckpoint(f"{directory}: {type(err).__name__}: {err}") from err
    return ResumePoint(
        chunks_done=meta["chunks_done"],
        optimizer_steps=meta["optimizer_steps"],
        history=meta["history"],
        adapter=adapter,
        optimizer=states["optimizer"],
        scheduler=states["scheduler"],
        seconds=meta.get("seconds", 0.0),
        scaler=states.get("scaler"),
    )


def clear_resume_state(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
