"""GPU slots: concurrent job processes of one machine each get their own GPU, and a dead job's GPU is freed."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from arenapref.errors import DeviceError
from arenapref.model import gpu_slots
from arenapref.model.gpu_slots import acquire_gpu_slot, physical_id, release_gpu_slot, visible_cuda_devices

SRC = Path(__file__).resolve().parents[2] / "src"

# A stand-in for a pipeline job: claim a slot, report it, then hold it until stdin closes or the process is killed.
HOLDER = """
import logging, sys
from pathlib import Path
from arenapref.model.gpu_slots import acquire_gpu_slot
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
slot = acquire_gpu_slot(int(sys.argv[1]), lock_dir=Path(sys.argv[2]), poll_seconds=0.05)
print(slot.index, flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def no_slot_held():
    release_gpu_slot()
    yield
    release_gpu_slot()


@pytest.fixture
def holders():
    """Start holder processes; whatever is still running at the end of the test is killed."""
    started: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}

    def start(count: int, lock_dir: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(count), str(lock_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def read_line(stream, timeout: float) -> str | None:
    """The next line of a child's pipe, or None if nothing arrives within ``timeout`` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().strip() if ready else None


def slot_of(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    line = read_line(proc.stdout, timeout)
    assert line, f"holder printed no slot; stderr: {proc.stderr.read() if proc.poll() is not None else '(running)'}"
    return int(line)


@pytest.mark.parametrize("count", [2, 3])
def test_concurrent_jobs_get_distinct_gpus(tmp_path, holders, count):
    procs = [holders(count, tmp_path) for _ in range(count)]
    assert sorted(slot_of(proc) for proc in procs) == list(range(count))


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_waiting_job_gets_the_gpu_a_finished_job_frees(tmp_path, holders, how):
    first, second = holders(2, tmp_path), holders(2, tmp_path)
    by_slot = {slot_of(first): first, slot_of(second): second}
    assert sorted(by_slot) == [0, 1]

    waiter = holders(2, tmp_path)
    warning = read_line(waiter.stderr, timeout=10)
    assert warning is not None and "all 2 GPUs are in use" in warning
    assert str(tmp_path) in warning and str(first.pid) in warning and str(second.pid) in warning
    assert read_line(waiter.stdout, timeout=0.3) is None, "a third job must wait while both GPUs are held"

    freed = 1
    if how == "kill":
        # SIGKILL leaves no chance for cleanup code: only the kernel dropping the lock can free the GPU.
        by_slot[freed].send_signal(signal.SIGKILL)
    else:
        by_slot[freed].stdin.close()
    by_slot[freed].wait(timeout=10)
    assert slot_of(waiter) == freed
    assert by_slot[1 - freed].poll() is None


def test_timeout_names_the_lock_dir_and_warns_once(tmp_path, holders, caplog):
    for proc in (holders(2, tmp_path), holders(2, tmp_path)):
        slot_of(proc)
    with caplog.at_level(logging.WARNING, logger=gpu_slots.__name__), pytest.raises(DeviceError) as raised:
        acquire_gpu_slot(2, lock_dir=tmp_path, poll_seconds=0.02, timeout_seconds=0.2)
    message = str(raised.value)
    assert str(tmp_path) in message and "\n" not in message
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@pytest.mark.parametrize("count", [0, 1])
def test_single_gpu_takes_no_lock(tmp_path, monkeypatch, count):
    env_dir = tmp_path / "from-env"
    monkeypatch.setenv(gpu_slots.LOCK_DIR_ENV, str(env_dir))
    monkeypatch.delenv(gpu_slots.VISIBLE_DEVICES_ENV, raising=False)
    explicit_dir = tmp_path / "explicit"
    for lock_dir in (None, explicit_dir):
        slot = acquire_gpu_slot(count, lock_dir=lock_dir)
        assert (slot.index, slot.physical_id, slot.lock_path) == (0, "0", None)
    assert not env_dir.exists() and not explicit_dir.exists()


def test_single_gpu_reports_the_device_slurm_assigned(monkeypatch):
    monkeypatch.setenv(gpu_slots.VISIBLE_DEVICES_ENV, "3")
    slot = acquire_gpu_slot(1)
    assert (slot.index, slot.physical_id) == (0, "3")


def test_slot_maps_to_the_physical_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv(gpu_slots.VISIBLE_DEVICES_ENV, "5,7")
    slot = acquire_gpu_slot(2, lock_dir=tmp_path)
    assert (slot.index, slot.physical_id) == (0, "5")
    described = json.loads(json.dumps(slot.describe()))
    assert described["gpu_index"] == 0 and described["physical_gpu"] == "5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2,3", ["2", "3"]),
        (" 2 , ,3, ", ["2", "3"]),
        ("GPU-8a2f, MIG-1c3d", ["GPU-8a2f", "MIG-1c3d"]),
        ("", []),
        ("-1", []),
        ("0,2,-1,1", ["0", "2"]),
    ],
)
def test_visible_cuda_devices(value, expected):
    assert visible_cuda_devices({"CUDA_VISIBLE_DEVICES": value}) == expected


def test_physical_id():
    assert visible_cuda_devices({}) is None
    assert physical_id(1, {"CUDA_VISIBLE_DEVICES": "2,3"}) == "3"
    assert physical_id(1, {}) == "1"


def test_reacquire_returns_held_slot_and_release_frees_it(tmp_path, holders):
    slot = acquire_gpu_slot(2, lock_dir=tmp_path)
    assert acquire_gpu_slot(2, lock_dir=tmp_path) == slot
    other = holders(2, tmp_path)
    assert slot_of(other) == 1 - slot.index, "a second acquire in one process must not take a second GPU"

    release_gpu_slot()
    assert slot_of(holders(2, tmp_path)) == slot.index


def test_lock_dir_is_per_user_and_overridable(tmp_path, monkeypatch):
    monkeypatch.delenv(gpu_slots.LOCK_DIR_ENV, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    default = gpu_slots.gpu_lock_dir()
    assert default == tmp_path / f"arenapref-gpu-slots-{os.getuid()}" and default.is_dir()

    monkeypatch.setenv(gpu_slots.LOCK_DIR_ENV, str(tmp_path / "a" / "b"))
    assert gpu_slots.gpu_lock_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()


def test_import_does_not_load_torch():
    code = "import sys, arenapref.model.gpu_slots; sys.exit('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=30).returncode == 0
