"""train.head_learning_rate: the classification layer in its own optimizer group at its own rate,
scaled by the same schedule; null keeps the single group of train.learning_rate."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from arenapref.config import RunConfig
from arenapref.train.training import Examples, linear_schedule, make_optimizer, train_adapter

CPU = torch.device("cpu")


def _model(checkpoint, head: str = "classifier", seed: int = 0):
    from arenapref.model.modeling import attach_new_adapter, load_base_model

    run = RunConfig.from_config({"model": {"head": head}})
    torch.manual_seed(seed)
    return attach_new_adapter(load_base_model(checkpoint, run.model, CPU, torch.float32, 0), run.model)


def _settings(**train):
    return RunConfig.from_config(
        {"train": {"optimizer": "adamw", "learning_rate": 2e-4, "batch_size": 4, "chunk_size": 8, **train}}
    ).train


def _trainable(model):
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def test_the_head_gets_its_own_group_and_rate(tiny_checkpoint):
    model = _model(tiny_checkpoint)
    named = _trainable(model)
    optimizer = make_optimizer(named, _settings(head_learning_rate=1e-5), CPU)
    body, head = optimizer.param_groups
    assert (body["lr"], head["lr"]) == (2e-4, 1e-5)
    names = {id(p): name for name, p in named}
    assert all("score" in names[id(p)] for p in head["params"]) and head["params"]
    assert not any("score" in names[id(p)] for p in body["params"])
    assert all("lora_" in names[id(p)] for p in body["params"])
    assert len(body["params"]) + len(head["params"]) == len(named)


def test_the_schedule_scales_both_groups(tiny_checkpoint):
    optimizer = make_optimizer(_trainable(_model(tiny_checkpoint)), _settings(head_learning_rate=1e-5), CPU)
    scheduler = linear_schedule(optimizer, warmup_steps=2, total_steps=10)
    for step in range(6):
        optimizer.step()
        scheduler.step()
        factor = scheduler.lr_lambdas[0](step + 1)
        assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([2e-4 * factor, 1e-5 * factor])
    assert 0 < optimizer.param_groups[1]["lr"] < 1e-5  # decaying, as the body's does


def test_null_keeps_one_group_at_the_learning_rate(tiny_checkpoint):
    optimizer = make_optimizer(_trainable(_model(tiny_checkpoint)), _settings(), CPU)
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["lr"] == 2e-4


def test_the_sft_head_ignores_the_setting_and_says_so(tiny_checkpoint, caplog):
    named = _trainable(_model(tiny_checkpoint, head="sft"))
    with caplog.at_level(logging.WARNING, logger="arenapref.train.training"):
        optimizer = make_optimizer(named, _settings(head_learning_rate=1e-5), CPU)
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["lr"] == 2e-4
    assert "train.head_learning_rate 1e-05 is ignored" in caplog.text and "sft head" in caplog.text


def _losses(checkpoint, tmp_path, settings) -> list[float]:
    generator = torch.Generator().manual_seed(1)
    ids = [
        torch.randint(3, 200, (int(n),), generator=generator).tolist()
        for n in torch.randint(8, 40, (16,), generator=generator)
    ]
    labels = [i % 3 for i in range(16)]
    model = _model(checkpoint, seed=settings.seed)
    result = train_adapter(model, Examples(ids, labels, 0), settings, CPU, torch.float32, tmp_path, {"test": "lr"})
    return [entry["loss"] for entry in result.history]


def test_losses_follow_the_head_rate_and_null_trains_as_one_group(tiny_checkpoint, tmp_path):
    settings = _settings(epochs=2, learning_rate=5e-3)
    plain = _losses(tiny_checkpoint, tmp_path / "plain", settings)
    again = _losses(tiny_checkpoint, tmp_path / "again", settings)
    # Two groups at one rate are the single group's AdamW, parameter by parameter: the same losses.
    same_rate = _losses(tiny_checkpoint, tmp_path / "same", dataclasses.replace(settings, head_learning_rate=5e-3))
    slow_head = _losses(tiny_checkpoint, tmp_path / "slow", dataclasses.replace(settings, head_learning_rate=5e-6))
    assert len(plain) >= 3
    assert plain == again == same_rate
    assert slow_head[0] == plain[0] and slow_head[1:] != plain[1:]  # the first loss comes before any update
