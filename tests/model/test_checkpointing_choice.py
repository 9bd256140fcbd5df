"""train.gradient_checkpointing auto: decided by the training job's memory plan on a GPU (off where
the step fits the free memory without it), off on a CPU, logged with its reason; the planner's rows
show the same choice for each GPU class."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch

from arenapref.config import RunConfig
from arenapref.model.plan import (
    CUDA_CONTEXT_BYTES,
    FRAGMENTATION,
    GIB,
    GPU_CLASSES,
    KNOWN_SHAPES,
    Arithmetic,
    ModelShape,
    Workload,
    plan_gpu,
    training_memory,
)

ROOT = Path(__file__).resolve().parents[2]
RUN = RunConfig.from_config({"model": {"max_length": 512}, "train": {"batch_size": 8}})


def _fake_gpu_runtime(tiny_checkpoint, run: RunConfig):
    """A runtime as Runtime.create leaves it on CUDA with auto: the choice still open."""
    from arenapref.model.runtime import Runtime

    rt = Runtime.create(run, tiny_checkpoint)
    return dataclasses.replace(
        rt, device=torch.device("cuda", 0), gpu={"name": "Fake GPU"}, gradient_checkpointing=None
    )


def _peaks(tiny_checkpoint, rt, run: RunConfig, length: int) -> dict[bool, int]:
    shape = ModelShape.from_checkpoint(tiny_checkpoint, run)
    arith = Arithmetic("cuda", rt.dtype.itemsize, rt.quantization)
    return {
        flag: training_memory(shape, run, arith, flag, run.train.batch_size, length)["peak"] for flag in (False, True)
    }


def _free_for(peak: int) -> int:
    """The free memory at which `peak` just fits with the plan's margins."""
    return int(peak * (1 + FRAGMENTATION))


def test_auto_turns_checkpointing_off_where_the_step_fits_without_it(tiny_checkpoint, monkeypatch, caplog):
    from arenapref.train.job import plan_training_memory

    rt = _fake_gpu_runtime(tiny_checkpoint, RUN)
    peaks = _peaks(tiny_checkpoint, rt, RUN, 512)
    free = _free_for(peaks[False]) + 1024
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 2 * free))
    with caplog.at_level(logging.INFO, logger="arenapref.train.job"):
        planned = plan_training_memory(rt, RUN, tiny_checkpoint, 512)
    assert rt.gradient_checkpointing is False
    assert planned["peak"] == pytest.approx(peaks[False] / GIB, abs=1e-3)
    expected = f"gradient checkpointing off: the step needs {peaks[False] / GIB:.1f} GiB of {free / GIB:.1f} GiB free"
    assert any(record.getMessage().startswith(expected) for record in caplog.records), caplog.text


def test_auto_turns_checkpointing_on_where_the_step_needs_it(tiny_checkpoint, monkeypatch, caplog):
    from arenapref.train.job import plan_training_memory

    rt = _fake_gpu_runtime(tiny_checkpoint, RUN)
    peaks = _peaks(tiny_checkpoint, rt, RUN, 512)
    assert peaks[True] < peaks[False]
    free = (_free_for(peaks[True]) + _free_for(peaks[False])) // 2  # room with checkpointing only
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 2 * free))
    with caplog.at_level(logging.INFO, logger="arenapref.train.job"):
        planned = plan_training_memory(rt, RUN, tiny_checkpoint, 512)
    assert rt.gradient_checkpointing is True
    assert planned["peak"] == pytest.approx(peaks[True] / GIB, abs=1e-3)
    assert f"gradient checkpointing on: without it the step would need {peaks[False] / GIB:.1f} GiB" in caplog.text


def test_the_choice_follows_the_longest_row(tiny_checkpoint, monkeypatch):
    """The same free memory: rows of 128 tokens fit without checkpointing, rows of 512 need it."""
    from arenapref.train.job import plan_training_memory

    short, long = (_peaks(tiny_checkpoint, _fake_gpu_runtime(tiny_checkpoint, RUN), RUN, n) for n in (128, 512))
    free = max(_free_for(short[False]), _free_for(long[True])) + 1024
    assert free < _free_for(long[False])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 2 * free))
    choices = {}
    for length in (128, 512):
        rt = _fake_gpu_runtime(tiny_checkpoint, RUN)
        plan_training_memory(rt, RUN, tiny_checkpoint, length)
        choices[length] = rt.gradient_checkpointing
    assert choices == {128: False, 512: True}


def test_explicit_settings_and_the_cpu_are_not_planned(tiny_checkpoint, caplog):
    from arenapref.model.modeling import checkpointing_choice
    from arenapref.model.runtime import Runtime
    from arenapref.train.job import plan_training_memory

    assert checkpointing_choice(False, "cuda", 100 * GIB, 10 * GIB) == (False, "train.gradient_checkpointing is false")
    assert checkpointing_choice(True, "cuda", 1, 10 * GIB)[0] is True
    assert checkpointing_choice("auto", "cpu", 100 * GIB, 1)[0] is False
    rt = Runtime.create(RUN, tiny_checkpoint)  # this machine's CPU
    assert rt.gradient_checkpointing is False
    with caplog.at_level(logging.INFO, logger="arenapref.train.job"):
        plan_training_memory(rt, RUN, tiny_checkpoint, 64)
    assert rt.gradient_checkpointing is False
    assert "gradient checkpointing off: train.gradient_checkpointing auto on cpu" in caplog.text


def test_train_fold_decides_before_the_model_loads(tiny_checkpoint, tmp_path, monkeypatch):
    """The job encodes its rows, plans at the longest one, and only then loads the base model."""
    from arenapref.data.preprocess import preprocess_train
    from arenapref.data.sample_data import write_sample
    from arenapref.model.runtime import Runtime
    from arenapref.train import job

    paths = write_sample(tmp_path / "sample", n_train=24, n_test=2, seed=3)
    table, _ = preprocess_train(paths["train"], n_folds=2, seed=0)
    table.write_parquet(tmp_path / "train.parquet")
    rt = _fake_gpu_runtime(tiny_checkpoint, RUN)
    monkeypatch.setattr(job.Runtime, "create", classmethod(lambda cls, run, checkpoint: rt))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (64 * GIB, 80 * GIB))
    seen = {}

    class Loaded(Exception):
        pass

    def base_model(self, run, checkpoint):
        seen["checkpointing"] = self.gradient_checkpointing
        raise Loaded

    monkeypatch.setattr(Runtime, "base_model", base_model)
    with pytest.raises(Loaded):
        job.train_fold(tmp_path / "train.parquet", 0, tiny_checkpoint, RUN, *(tmp_path / n for n in "abc"))
    assert seen == {"checkpointing": False}  # resolved (not None) by the time the weights load


def test_plan_rows_show_the_choice_for_each_gpu_class():
    run = RunConfig.from_config({"model": {"max_length": 1024}, "train": {"batch_size": 4}})
    shape = ModelShape.from_dict(KNOWN_SHAPES["llama-3.1-8b"], run)
    rows = {gb: plan_gpu(shape, run, gpu, Workload.competition(run, 5)) for gb, gpu in GPU_CLASSES.items()}
    for gb, row in rows.items():
        memory = GPU_CLASSES[gb].memory_gib * GIB
        fits_without = row["train_peak_without_checkpointing_gib"] * GIB * (1 + FRAGMENTATION) + CUDA_CONTEXT_BYTES
        assert row["checkpointing"] is (fits_without > memory), row
    # 8B nf4 at 4 x 1024 needs about 15.5 GiB without checkpointing: a T4 needs it, 24 GB and up do not.
    assert [row["checkpointing"] for row in rows.values()] == [True, False, False, False]
    assert rows[16]["checkpointing_reason"].startswith("without it the step would need")
    assert rows[80]["checkpointing_reason"].startswith("the step needs")
    forced = RunConfig.from_config({"model": {"max_length": 1024}, "train": {"gradient_checkpointing": True}})
    assert plan_gpu(shape, forced, GPU_CLASSES[80], Workload.competition(forced, 5))["checkpointing"] is True
