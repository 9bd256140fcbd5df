"""Give each concurrently running job of one machine its own GPU.

Snakemake's ``--resources gpu=N`` only counts: it starts at most N GPU jobs at once but never says which GPU a job
should use, so without help every job would pick ``cuda:0``. Each job process therefore claims a slot itself, with an
exclusive ``flock`` on ``<lock dir>/gpu<i>.lock``. The lock lives on an open file descriptor that this module keeps
for the life of the process, so the kernel drops it when the process ends however it ends (SIGKILL, OOM killer,
node-local crash): no stale lock can outlive its job and nothing needs cleaning up.

Nothing here imports torch, so claiming a slot does not initialise CUDA; the caller counts the devices and then
opens ``torch.device("cuda", slot.index)``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from arenapref.errors import DeviceError

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "ARENAPREF_GPU_LOCK_DIR"
VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class GpuSlot:
    """The GPU this process uses.

    ``index`` is the CUDA ordinal inside this process (``cuda:{index}``); ``physical_id`` is what that ordinal maps to
    on the machine (the CUDA_VISIBLE_DEVICES entry at that position), which is what nvidia-smi and the logs of other
    jobs show. ``lock_path`` is None when no lock was needed (at most one visible GPU).
    """

    index: int
    count: int
    physical_id: str
    lock_path: Path | None

    def describe(self) -> dict[str, object]:
        """A JSON-friendly summary for logs and run metadata."""
        return {
            "gpu_index": self.index,
            "gpu_count": self.count,
            "physical_gpu": self.physical_id,
            "lock": None if self.lock_path is None else str(self.lock_path),
        }


# The slot this process holds and the descriptor that carries its lock. Closing the descriptor (or the process
# ending) is what frees the slot, so it must stay referenced here rather than in a caller's local variable.
_held_slot: GpuSlot | None = None
_held_fd: int | None = None
_registry_lock = threading.Lock()


def gpu_lock_dir() -> Path:
    """Directory holding the slot locks, created if missing.

    Node-local by default on purpose: on a cluster each node has its own GPUs, so jobs on different nodes must not
    see each other's locks. The user id is part of the name so another user's jobs (whose GPUs the scheduler
    accounts separately) cannot block ours, nor can their directory's permissions.
    """
    configured = os.environ.get(LOCK_DIR_ENV)
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / f"arenapref-gpu-slots-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def visible_cuda_devices(env: Mapping[str, str] | None = None) -> list[str] | None:
    """Entries of CUDA_VISIBLE_DEVICES in order, or None when the variable is unset (every GPU is visible).

    Entries may be indices, ``GPU-<uuid>`` or MIG names, so they are kept as strings. CUDA stops at the first
    negative index ("0,2,-1,1" shows devices 0 and 2 only), which is also why "-1" hides every GPU.
    """
    env = os.environ if env is None else env
    raw = env.get(VISIBLE_DEVICES_ENV)
    if raw is None:
        return None
    devices: list[str] = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        if entry.startswith("-") and entry[1:].isdigit():
            break
        devices.append(entry)
    return devices


def physical_id(index: int, env: Mapping[str, str] | None = None) -> str:
    """The machine-level id of CUDA ordinal ``index`` in this process, for logs that must match nvidia-smi."""
    visible = visible_cuda_devices(env)
    if visible is not None and 0 <= index < len(visible):
        return visible[index]
    return str(index)


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path``, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    # Who holds the slot, for a person reading the lock file; the lock itself is what other jobs test.
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {stamp}\n".encode(), 0)
    return fd


def _holder_pids(paths: list[Path]) -> list[str]:
    """Pids recorded in the lock files; best effort, since a holder may be rewriting its file right now."""
    pids = []
    for path in paths:
        try:
            fields = path.read_text(encoding="utf-8").split()
        except OSError:
            continue
        if fields:
            pids.append(fields[0])
    return pids


def acquire_gpu_slot(
    count: int,
    lock_dir: Path | None = None,
    poll_seconds: float = 5.0,
    timeout_seconds: float | None = None,
) -> GpuSlot:
    """Claim one of ``count`` GPUs for this process, waiting while other jobs of this machine hold all of them.

    With at most one GPU visible there is nothing to choose and no lock is taken: that is also how SLURM gives each
    job its own GPU (each job sees it as device 0), and locking device 0 there would make jobs that share a node
    wait for each other for nothing. A second call in the same process returns the slot already held.

    Raises DeviceError when ``timeout_seconds`` (None: wait forever) passes without a free slot.
    """
    global _held_slot, _held_fd
    with _registry_lock:
        if _held_slot is not None:
            return _held_slot
        if count <= 1:
            return GpuSlot(index=0, count=count, physical_id=physical_id(0), lock_path=None)

        directory = gpu_lock_dir() if lock_dir is None else lock_dir
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"gpu{i}.lock" for i in range(count)]
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        warned = False
        while True:
            for index, path in enumerate(paths):
                fd = _try_lock(path)
                if fd is None:
                    continue
                _held_fd = fd
                _held_slot = GpuSlot(index=index, count=count, physical_id=physical_id(index), lock_path=path)
                log.info("using GPU %d of %d (physical %s), lock %s", index, count, _held_slot.physical_id, path)
                return _held_slot
            if not warned:
                # Once, not per poll: a job may legitimately queue for hours behind long training runs.
                pids = ", ".join(_holder_pids(paths)) or "unknown"
                log.warning(
                    "all %d GPUs are in use by other jobs of this machine (pids %s, locks in %s); waiting for one",
                    count,
                    pids,
                    directory,
                )
                warned = True
            if deadline is None:
                time.sleep(poll_seconds)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceError(
                    f"no free GPU after {timeout_seconds:g}s: all {count} GPUs are held by other jobs of this machine "
                    f"(locks in {directory})"
                )
            time.sleep(min(poll_seconds, remaining))


def release_gpu_slot() -> None:
    """Give the held slot back now instead of at process exit (tests, clean shutdown); a no-op when none is held.

    The lock file is left in place: deleting it would let a waiting process lock the old, unlinked file while a
    newcomer locks a fresh one under the same name, and both would believe they own the GPU.
    """
    global _held_slot, _held_fd
    with _registry_lock:
        if _held_fd is not None:
            os.close(_held_fd)
        _held_slot = None
        _held_fd = None
