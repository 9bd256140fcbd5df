"""The whole pipeline through profiles/slurm on a real single-node SLURM (tests/slurm/cluster.sh).

Skips with the reason when the cluster cannot be brought up here (not root, no apt-get).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import SNAKEMAKE, path_without_venv
from test_pipeline import FAST_TRAIN, check_outputs, planned_jobs

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    try:
        up = subprocess.run(["bash", CLUSTER, "up", state], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", CLUSTER, "down", state], capture_output=True, text=True, timeout=120)
        raise
    if up.returncode == 3:
        pytest.skip(up.stderr.strip())
    if up.returncode != 0:  # a half-started cluster (say, its ports taken) leaves no daemon behind
        subprocess.run(["bash", CLUSTER, "down", state], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    subprocess.run(["bash", CLUSTER, "down", state], capture_output=True, text=True, timeout=120)


CONTROLLER_PORT = 16817  # SlurmctldPort in cluster.sh


def test_up_gives_up_soon_after_the_controller_dies(tmp_path):
    """slurmctld cannot bind its port (held here by another socket) and exits: `up` says so and
    stops within 60 s instead of polling a dead controller, and `down` leaves no daemon behind."""
    install = subprocess.run(["bash", CLUSTER, "install", tmp_path], capture_output=True, text=True, timeout=900)
    if install.returncode == 3:
        pytest.skip(install.stderr.strip())
    assert install.returncode == 0, install.stdout + install.stderr
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", CONTROLLER_PORT))
    except OSError:
        holder.close()
        pytest.skip(f"port {CONTROLLER_PORT} is in use (a test cluster is up)")
    holder.listen()
    started = time.monotonic()
    try:
        up = subprocess.run(["bash", CLUSTER, "up", tmp_path], capture_output=True, text=True, timeout=300)
    finally:
        holder.close()
        elapsed = time.monotonic() - started
        subprocess.run(["bash", CLUSTER, "down", tmp_path], capture_output=True, text=True, timeout=120)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "SLURM node did not come up (slurmctld exited)" in up.stderr, up.stderr
    assert elapsed < 60, f"{elapsed:.0f} s"
    alive = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert alive == [], f"daemons of {tmp_path} still running: {alive}"


class RunningJobs(threading.Thread):
    """Polls squeue; remembers the most jobs seen running at once."""

    def __init__(self, env):
        super().__init__(daemon=True)
        self.env, self.most, self.done = env, 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            out = subprocess.run(
                ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True, env=self.env
            ).stdout
            self.most = max(self.most, len(out.split()))
            time.sleep(0.5)


def snakemake_slurm(workdir: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    command = [
        SNAKEMAKE,
        "-s",
        ROOT / "Snakefile",
        "--directory",
        workdir,
        "--profile",
        ROOT / "profiles" / "slurm",
        # This cluster has no accounting database: poll with squeue, submit without an account.
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-keep-successful-logs",
        # Poll often: the jobs here take seconds, not hours.
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        "--retries",
        "0",
        *extra,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)


def test_dry_run_plans_one_training_job_per_fold(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump({"folds": {"n": 5}}))
    env = dict(os.environ, PATH=path_without_venv())
    result = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "-s",
            ROOT / "Snakefile",
            "--directory",
            tmp_path,
            "--profile",
            ROOT / "profiles" / "slurm",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result)
    assert jobs["train_fold"] == 5 and jobs["predict_fold"] == 5


def test_pipeline_through_slurm(tmp_path, tiny_checkpoint, slurm_cluster):
    config = {
        "data": {"sample": {"n_train": 60, "n_test": 8, "seed": 7}},
        "folds": {"n": 2},
        "model": {"checkpoint": str(tiny_checkpoint), "max_length": 96},
        "train": FAST_TRAIN,
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    # .venv/bin/snakemake as the README has it, the environment not activated: the jobs find the
    # programs beside their interpreter too.
    env = dict(slurm_cluster, PATH=path_without_venv())
    watcher = RunningJobs(env)
    watcher.start()
    try:
        result = snakemake_slurm(tmp_path, env)
    finally:
        watcher.done.set()
        watcher.join()
    logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("results/logs/*.log")))
    assert result.returncode == 0, f"{result.stderr[-5000:]}\n{logs}"
    output = result.stdout + result.stderr
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", output)
    assert len(submitted) >= 6, output[-3000:]  # at least data, 2 x train, 2 x predict, evaluation
    check_outputs(tmp_path, 2, tmp_path / "results" / "sample" / "sample_submission.csv")
    assert watcher.most >= 2, "the two folds never ran as concurrent SLURM jobs"
    # SLURM gave each training job one of the node's (fake) GPUs; the code says it runs on the CPU.
    train_log = (tmp_path / "results" / "logs" / "train_fold0.log").read_text()
    assert "a GPU was allocated (CUDA_VISIBLE_DEVICES=" in train_log
    slurm_logs = list((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert any("train_fold" in str(p) for p in slurm_logs), slurm_logs
