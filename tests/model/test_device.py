import logging

import pytest
import torch

from arenapref.errors import DeviceError
from arenapref.model.modeling import resolve_device

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages given without CUDA")


def test_cuda_requested_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(DeviceError, match=r"device: cuda.*CUDA_VISIBLE_DEVICES=0.*device: cpu"):
        resolve_device("cuda")


def test_auto_warns_when_a_scheduler_allocated_a_gpu_torch_cannot_use(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with caplog.at_level(logging.WARNING):
        assert resolve_device("auto") == torch.device("cpu")
    assert "a GPU was allocated (CUDA_VISIBLE_DEVICES=0)" in caplog.text


def test_auto_on_a_plain_cpu_machine_is_quiet(monkeypatch, caplog):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with caplog.at_level(logging.WARNING):
        assert resolve_device("auto") == torch.device("cpu")
    assert caplog.text == ""
