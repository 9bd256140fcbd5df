"""glibc's allocator kept from faulting in fresh pages for every tensor (arenapref.model.allocator)."""

import json
import subprocess
import sys

import pytest

from arenapref.model import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")

# A fresh process runs four decoder MLP blocks (RMSNorm through fp32, then SwiGLU) over a
# 2,048-token batch in bf16, five times, and prints the page faults each pass took.
PASSES = """
import json, resource, sys, torch
import torch.nn.functional as F
if sys.argv[1] == "keep":
    from arenapref.model.allocator import keep_freed_memory
    assert keep_freed_memory()
torch.manual_seed(0)
shapes = ((1536, 576), (1536, 576), (576, 1536))
layers = [[torch.randn(*shape, dtype=torch.bfloat16) for shape in shapes] for _ in range(4)]
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
with torch.inference_mode():
    for _ in range(5):
        before = faults()
        h = torch.randn(2048, 576, dtype=torch.bfloat16)
        for gate, up, down in layers:
            x = h.float()
            x = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16)
            h = h + F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)
        counts.append(faults() - before)
print(json.dumps(counts))
"""


def fault_passes(mode: str) -> list[int]:
    env = {"PATH": "/usr/bin:/bin"}  # none of the user's allocator variables
    done = subprocess.run(
        [sys.executable, "-c", PASSES, mode], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_tensor_memory_is_reused_without_page_faults():
    default, kept = fault_passes("default"), fault_passes("keep")
    pass_pages = 2048 * 1536 * 2 // 4096  # one MLP activation's pages
    # glibc's default gives freed blocks back and faults them in again on every pass (10,000 to
    # 26,000 faults a pass here); kept, the passes after the heap has grown reuse its pages.
    assert sum(default[2:]) >= 3 * pass_pages
    assert sum(kept[2:]) < sum(default[2:]) / 10


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    for name in allocator.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("name", allocator.USER_SETTINGS)
def test_the_users_allocator_settings_win(fresh_state, name):
    calls = []
    fresh_state.setattr(allocator, "_glibc", lambda: calls.append("glibc"))
    fresh_state.setenv(name, "glibc.malloc.trim_threshold=0" if name == "GLIBC_TUNABLES" else "1")
    assert allocator.keep_freed_memory() is False
    assert calls == []  # mallopt never reached


def test_applied_once_per_process_and_only_on_linux(fresh_state):
    calls = []

    class FakeLibc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 1

    fresh_state.setattr(allocator, "_glibc", FakeLibc)
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True
    assert calls == [
        (allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD),
        (allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD),
    ]
    fresh_state.setattr(allocator, "_applied", None)
    fresh_state.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
    assert len(calls) == 2


def test_a_c_library_that_refuses_the_settings_reports_it(fresh_state):
    class RefusingLibc:
        def mallopt(self, parameter, value):
            return 0

    fresh_state.setattr(allocator, "_glibc", RefusingLibc)
    assert allocator.keep_freed_memory() is False


def test_cpu_jobs_keep_freed_memory(tiny_checkpoint, monkeypatch):
    from arenapref.config import RunConfig
    from arenapref.model import runtime

    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append(True) or True)
    runtime.Runtime.create(RunConfig.from_config({"device": "cpu"}), tiny_checkpoint)
    assert calls == [True]
