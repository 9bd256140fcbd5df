"""train.report_to: every optimizer step's loss, learning rate and gradient norm reach TensorBoard or
MLflow under the fold's folder, numbered as the fold's steps across a resume, beside an unchanged
training log."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow

SETTINGS = {
    "model": {"max_length": 96},
    "train": {"epochs": 2, "batch_size": 4, "grad_accum": 2, "chunk_size": 12, "learning_rate": 1e-3},
}

# The history rounds loss and gradient norm to 6 decimals; TensorBoard stores float32.
TOLERANCE = {"loss": {"abs": 1e-6}, "grad_norm": {"abs": 1e-6}, "lr": {"rel": 1e-6}}


@pytest.fixture(scope="module")
def fold_data(tmp_path_factory) -> Path:
    from arenapref.data.preprocess import preprocess_train
    from arenapref.data.sample_data import write_sample

    root = tmp_path_factory.mktemp("report-data")
    paths = write_sample(root / "sample", n_train=40, n_test=4, seed=5)
    train, _ = preprocess_train(paths["train"], n_folds=2, seed=0)
    train.write_parquet(root / "train.parquet")
    return root / "train.parquet"


def with_report(report_to: str):
    from arenapref.config import RunConfig

    return RunConfig.from_config({**SETTINGS, "train": {**SETTINGS["train"], "report_to": report_to}})


def test_where_steps_are_reported_is_not_part_of_the_training_hash():
    assert with_report("tensorboard").training_hash() == with_report("none").training_hash()


def test_tensorboard_gets_every_step_continuing_across_a_resume(fold_data, tiny_checkpoint, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import arenapref.train.checkpointing as checkpointing
    from arenapref.errors import CheckpointError
    from arenapref.train.job import train_fold

    run = with_report("tensorboard")
    paths = (tmp_path / "adapter", tmp_path / "train_log.json", tmp_path / "resume")
    real_save, saves = checkpointing.save_file, []

    def fail_the_second_save(tensors, path):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(tensors, path)

    with monkeypatch.context() as patch:
        patch.setattr(checkpointing, "save_file", fail_the_second_save)
        with pytest.raises(CheckpointError):
            train_fold(fold_data, 0, tiny_checkpoint, run, *paths)
    summary = train_fold(fold_data, 0, tiny_checkpoint, run, *paths)
    assert summary["resumed_from_chunk"] == 1
    assert not [key for key in summary if "report" in key]  # the training log is as without reporting

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    history = summary["history"]
    # The steps the failed run logged after its last resume point are replaced by the resumed run's.
    for tag, key in (("train/loss", "loss"), ("train/learning_rate", "lr"), ("train/grad_norm", "grad_norm")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [h["step"] for h in history] == list(range(1, len(history) + 1))
        assert [s.value for s in scalars] == pytest.approx([h[key] for h in history], **TOLERANCE[key])


def test_mlflow_file_store_gets_every_step(fold_data, tiny_checkpoint, tmp_path):
    for module in ("mlflow", "alembic"):
        pytest.importorskip(module, reason=f"{module} is not installed (requirements.txt pins it)")
    from mlflow.tracking import MlflowClient

    from arenapref.model.modeling import attach_new_adapter
    from arenapref.model.runtime import Runtime
    from arenapref.train.training import Examples, train_adapter

    run = with_report("mlflow")
    rt = Runtime.create(run, tiny_checkpoint)
    table = pl.read_parquet(fold_data).filter(pl.col("fold") != 0)
    model = attach_new_adapter(rt.base_model(run, tiny_checkpoint), run.model)
    examples = Examples(rt.encode(table), table["label"].to_list(), rt.tokenizer.pad_token_id)
    store = tmp_path / "mlflow"
    result = train_adapter(
        model, examples, run.train, rt.device, rt.dtype, tmp_path / "resume", {"c": "x"}, report_dir=store
    )

    client = MlflowClient(tracking_uri=f"sqlite:///{store.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("arenapref")
    assert experiment.artifact_location == (store / "artifacts").resolve().as_uri()
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.info.status == "FINISHED"
    for metric, key in (("loss", "loss"), ("learning_rate", "lr"), ("grad_norm", "grad_norm")):
        logged = sorted(client.get_metric_history(mlflow_run.info.run_id, metric), key=lambda m: m.step)
        assert [m.step for m in logged] == [h["step"] for h in result.history]
        assert [m.value for m in logged] == pytest.approx([h[key] for h in result.history], **TOLERANCE[key])


def test_a_missing_backend_is_a_clear_error_before_training(monkeypatch):
    import importlib.util

    from arenapref.errors import ConfigError
    from arenapref.train.training import require_report_backend

    require_report_backend("none")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "mlflow" else real_find_spec(name))
    with pytest.raises(ConfigError, match=r"train.report_to: mlflow needs mlflow-skinny .*pip install"):
        require_report_backend("mlflow")
