"""Faults: a fold killed mid-training resumes at its last chunk and ends where an uninterrupted
run ends; unreadable resume state is retrained, not used."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

SETTINGS = {
    "model": {"max_length": 96},
    "train": {"epochs": 3, "batch_size": 4, "grad_accum": 1, "chunk_size": 8, "learning_rate": 1e-3},
}


@pytest.fixture(scope="module")
def fold_data(tmp_path_factory) -> tuple[Path, Path]:
    from arenapref.data.preprocess import preprocess_test, preprocess_train
    from arenapref.data.sample_data import write_sample

    root = tmp_path_factory.mktemp("fold-data")
    paths = write_sample(root / "sample", n_train=60, n_test=6, seed=3)
    train, _ = preprocess_train(paths["train"], n_folds=2, seed=0)
    test, _ = preprocess_test(paths["test"])
    train.write_parquet(root / "train.parquet")
    test.write_parquet(root / "test.parquet")
    return root / "train.parquet", root / "test.parquet"


def train_command(data: Path, checkpoint: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "arenapref.commands.train_fold",
        "--data",
        str(data),
        "--fold",
        "0",
        "--checkpoint",
        str(checkpoint),
        "--config",
        json.dumps(SETTINGS),
        "--adapter-dir",
        str(out / "adapter"),
        "--log",
        str(out / "train_log.json"),
        "--resume-dir",
        str(out / "resume"),
    ]


def predict_oof(data: Path, test: Path, checkpoint: Path, out: Path) -> np.ndarray:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "arenapref.commands.predict_fold",
            "--data",
            str(data),
            "--test",
            str(test),
            "--fold",
            "0",
            "--checkpoint",
            str(checkpoint),
            "--adapter-dir",
            str(out / "adapter"),
            "--config",
            json.dumps(SETTINGS),
            "--out-oof",
            str(out / "oof.parquet"),
            "--out-test",
            str(out / "test.parquet"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return pl.read_parquet(out / "oof.parquet").select("winner_model_a", "winner_model_b", "winner_tie").to_numpy()


def kill_after_first_chunk(command: list[str], resume_dir: Path) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (resume_dir / "latest.json").exists():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def uninterrupted(fold_data, tiny_checkpoint, tmp_path_factory) -> np.ndarray:
    data, test = fold_data
    out = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(train_command(data, tiny_checkpoint, out), check=True, capture_output=True, timeout=600)
    log = json.loads((out / "train_log.json").read_text())
    assert log["resumed_from_chunk"] == 0 and log["optimizer_steps"] > 6
    return predict_oof(data, test, tiny_checkpoint, out)


def test_killed_fold_resumes_at_its_last_chunk_and_matches(fold_data, tiny_checkpoint, tmp_path, uninterrupted):
    data, test = fold_data
    command = train_command(data, tiny_checkpoint, tmp_path)
    kill_after_first_chunk(command, tmp_path / "resume")
    assert not (tmp_path / "adapter").exists()  # nothing half-written at the output path
    done = json.loads((tmp_path / "resume" / "latest.json").read_text())["directory"]
    chunks_done = int(done.removeprefix("chunk-"))
    assert chunks_done >= 1
    seconds_before_kill = json.loads((tmp_path / "resume" / done / "state.json").read_text())["seconds"]
    assert seconds_before_kill > 0

    subprocess.run(command, check=True, capture_output=True, timeout=600)
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["resumed_from_chunk"] >= chunks_done  # resumed, not restarted
    # The reported training time covers both runs; throughput only the tokens of the second.
    assert log["seconds"] - log["seconds_this_run"] == pytest.approx(seconds_before_kill, abs=0.02)
    assert not (tmp_path / "resume").exists()  # spent once the adapter is published
    np.testing.assert_allclose(predict_oof(data, test, tiny_checkpoint, tmp_path), uninterrupted, atol=1e-4)


def test_truncated_resume_state_is_retrained_not_used(fold_data, tiny_checkpoint, tmp_path, uninterrupted):
    data, test = fold_data
    command = train_command(data, tiny_checkpoint, tmp_path)
    kill_after_first_chunk(command, tmp_path / "resume")
    done = json.loads((tmp_path / "resume" / "latest.json").read_text())["directory"]
    weights = tmp_path / "resume" / done / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    assert "resume state is unreadable, retraining this fold from the start" in result.stderr
    assert json.loads((tmp_path / "train_log.json").read_text())["resumed_from_chunk"] == 0
    np.testing.assert_allclose(predict_oof(data, test, tiny_checkpoint, tmp_path), uninterrupted, atol=1e-4)


def test_full_disk_while_saving_a_checkpoint_is_a_clear_error_and_keeps_the_last_one(
    fold_data, tiny_checkpoint, tmp_path, monkeypatch
):
    import errno

    import arenapref.train.checkpointing as checkpointing
    from arenapref.config import RunConfig
    from arenapref.errors import CheckpointError
    from arenapref.model.modeling import attach_new_adapter
    from arenapref.model.runtime import Runtime
    from arenapref.train.training import Examples, train_adapter

    run = RunConfig.from_config(SETTINGS)
    rt = Runtime.create(run, tiny_checkpoint)
    table = pl.read_parquet(fold_data[0]).filter(pl.col("fold") != 0)
    model = attach_new_adapter(rt.base_model(run, tiny_checkpoint), run.model)
    real_save = checkpointing.save_file
    calls = []

    def save_then_fill_the_disk(tensors, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(tensors, path)

    monkeypatch.setattr(checkpointing, "save_file", save_then_fill_the_disk)
    resume = tmp_path / "resume"
    identity = {"config": "x"}
    with pytest.raises(CheckpointError, match=r"after chunk 2 .*No space left on device.*chunk \(1\) is intact"):
        train_adapter(
            model,
            Examples(rt.encode(table), table["label"].to_list(), rt.tokenizer.pad_token_id),
            run.train,
            rt.device,
            rt.dtype,
            resume,
            identity,
        )
    point = checkpointing.load_resume_point(resume, identity)
    assert point is not None and point.chunks_done == 1
    assert not list(resume.glob("*.partial"))


def test_truncated_adapter_is_a_clear_error(fold_data, tiny_checkpoint, tmp_path, uninterrupted):
    data, test = fold_data
    subprocess.run(train_command(data, tiny_checkpoint, tmp_path), check=True, capture_output=True, timeout=600)
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    with pytest.raises(subprocess.CalledProcessError) as err:
        predict_oof(data, test, tiny_checkpoint, tmp_path)
    stderr = err.value.stderr.decode()
    assert f"error: the adapter at {tmp_path / 'adapter'} cannot be read" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "oof.parquet").exists()


def test_same_seed_and_config_give_identical_predictions(fold_data, tiny_checkpoint, tmp_path, uninterrupted):
    data, test = fold_data
    subprocess.run(train_command(data, tiny_checkpoint, tmp_path), check=True, capture_output=True, timeout=600)
    np.testing.assert_array_equal(predict_oof(data, test, tiny_checkpoint, tmp_path), uninterrupted)
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert len(log["checkpoint_sha256"]) == 64 and len(log["adapter_sha256"]) == 64


def test_fp16_gradient_scaler_state_survives_a_kill_and_resume(fold_data, tiny_checkpoint, tmp_path):
    """fp16 (the T4/V100 precision) trains with a loss scale that adapts over thousands of steps; a
    resumed fold must continue with the saved scale, not restart at the initial one."""
    import torch

    data, _ = fold_data
    settings = {**SETTINGS, "train": {**SETTINGS["train"], "precision": "fp16"}}
    command = train_command(data, tiny_checkpoint, tmp_path)
    command[command.index("--config") + 1] = json.dumps(settings)
    kill_after_first_chunk(command, tmp_path / "resume")
    done = json.loads((tmp_path / "resume" / "latest.json").read_text())["directory"]
    states_file = tmp_path / "resume" / done / "optimizer.pt"
    states = torch.load(states_file, weights_only=True)
    assert states["scaler"]["scale"] == 65536.0  # saved with the chunk
    before = json.loads((tmp_path / "resume" / done / "state.json").read_text())["history"]
    assert {step["loss_scale"] for step in before} == {65536.0}
    # As if overflows had lowered the scale before the kill: the resumed run must start from it.
    states["scaler"]["scale"] = 512.0
    torch.save(states, states_file)

    subprocess.run(command, check=True, capture_output=True, timeout=600)
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["runtime"]["dtype"] == "float16"
    resumed = log["history"][len(before) :]
    assert resumed and resumed[0]["loss_scale"] == 512.0
    assert all(np.isfinite(step["loss"]) for step in log["history"])
