"""The matmul ceiling every "fraction of the matmul rate" is over: the best rate over sizes, beside
the device's rated dense peak, and how the reports show it."""

from __future__ import annotations

import pytest
import torch

from arenapref.bench import hardware
from arenapref.bench.hardware import measure_matmul_ceiling, rated_dense_tflops


@pytest.mark.parametrize(
    ("name", "tflops"),
    [
        ("Tesla T4", 65.0),
        ("Tesla V100-SXM2-16GB", 125.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA GeForce RTX 4090", 165.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        # Near namesakes with other figures: no rated peak rather than a neighbour's.
        ("NVIDIA A10G", None),
        ("NVIDIA L40S", None),
        ("NVIDIA H100 NVL", None),
        ("cpu", None),
    ],
)
def test_rated_peaks_by_device_name(name, tflops):
    assert rated_dense_tflops(name) == tflops


def test_the_ceiling_is_the_best_rate_over_sizes_beside_the_rated_peak(monkeypatch):
    rates = {2048: 500e12, 4096: 700e12, 8192: 790e12, 16384: 780e12}  # an H200's shape: it peaks late
    monkeypatch.setattr(hardware, "matmul_rate", lambda device, dtype, size, seconds: rates[size])
    monkeypatch.setattr(hardware, "device_name", lambda device: "NVIDIA H200")
    ceiling = measure_matmul_ceiling(torch.device("cuda"), torch.bfloat16)
    assert (ceiling.flops_per_s, ceiling.size) == (790e12, 8192)
    assert ceiling.rated_flops_per_s == 989e12 and ceiling.over_rated == pytest.approx(790 / 989)
    assert ceiling.as_dict()["over_rated"] == 0.799 and ceiling.as_dict()["tflops_by_size"]["16384"] == 780.0
    assert "0.80 of the 989 TFLOP/s rated for NVIDIA H200" in ceiling.describe()


def test_a_size_that_does_not_fit_ends_the_search(monkeypatch):
    def rate(device, dtype, size, seconds):
        if size > 4096:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return float(size)

    monkeypatch.setattr(hardware, "matmul_rate", rate)
    monkeypatch.setattr(hardware, "device_name", lambda device: "Tesla T4")
    ceiling = measure_matmul_ceiling(torch.device("cuda"), torch.float16)
    assert ceiling.size == 4096 and set(ceiling.rates_by_size) == {2048, 4096}


def test_the_cpu_ceiling_is_measured_without_a_rated_figure():
    ceiling = measure_matmul_ceiling(torch.device("cpu"), torch.float32, seconds=0.05, sizes=(64, 128))
    assert set(ceiling.rates_by_size) == {64, 128}
    assert ceiling.flops_per_s == max(ceiling.rates_by_size.values()) > 0
    assert ceiling.rated_flops_per_s is None and ceiling.over_rated is None
    assert "no rated figure for cpu" in ceiling.describe()


def test_the_gpu_check_table_names_what_the_fractions_are_over(monkeypatch):
    from arenapref.bench.report import check_table

    rates = {2048: 500e12, 4096: 700e12, 8192: 790e12, 16384: 780e12}
    monkeypatch.setattr(hardware, "matmul_rate", lambda device, dtype, size, seconds: rates[size])
    monkeypatch.setattr(hardware, "device_name", lambda device: "NVIDIA H200")
    ceiling = measure_matmul_ceiling(torch.device("cuda"), torch.bfloat16).as_dict()
    machine = {"torch": "2", "transformers": "5", "peft": "0", "device": "cuda:0"}
    report = {"machine": machine, "date": "-", "seconds": 1, "quantization": "nf4", "training": [], "inference": []}
    table = check_table(report | {"matmul_ceiling": [ceiling]})
    assert (
        "Fractions of the matmul rate are over the measured ceiling: bfloat16 790.0 TFLOP/s (best at 8192^3), "
        "0.80 of the 989 rated for NVIDIA H200" in table
    )
    assert "measured ceiling" not in check_table(report)
