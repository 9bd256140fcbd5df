"""What the GPU check and the GPU benchmark share: the machine's description, the matmul ceiling
measured once per device and dtype, a case whose failure is recorded rather than fatal, a run's
settings in another weight format, and the tiny shape the tests run both with on a CPU. Imports
nothing a bare CUDA machine lacks (no polars, no snakemake)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import platform

import torch

from arenapref.bench.hardware import MatmulCeiling, measure_matmul_ceiling
from arenapref.bench.random_model import release_memory
from arenapref.config import RunConfig
from arenapref.errors import ConfigError
from arenapref.model.plan import GIB, KNOWN_SHAPES

log = logging.getLogger(__name__)


@functools.cache
def matmul_ceiling(device: torch.device, dtype: torch.dtype) -> MatmulCeiling:
    """The matmul rate the cases' fractions are over, measured once per device and dtype (about 4 s
    on a GPU, up to 16384^3; on a CPU, where only the tests run it, one small size suffices)."""
    if device.type == "cuda":
        return measure_matmul_ceiling(device, dtype, seconds=3.0)
    return measure_matmul_ceiling(device, dtype, seconds=0.3, sizes=(1024,))


def importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def machine(device: torch.device) -> dict:
    import peft
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": str(device),
    }
    if importable("bitsandbytes"):
        import bitsandbytes

        info["bitsandbytes"] = bitsandbytes.__version__
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": properties.name,
            "memory_gib": round(properties.total_memory / GIB, 1),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
        }
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def guarded(device: torch.device, case, *args) -> dict:
    """`case(*args)`, or what failed (out of memory, a missing kernel or package), with `device`'s memory given back."""
    try:
        return case(*args)
    except (RuntimeError, ImportError, ValueError) as err:
        log.warning("%s failed: %s", case.__name__, err)
        release_memory(device)
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}


def tiny_shape() -> dict:
    """What the tests run the check with on a CPU."""
    return {
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
    }


def named_shape(name: str) -> dict:
    """A shape the planner knows by name (KNOWN_SHAPES), or `tiny` (what the tests run); else a
    ConfigError listing them."""
    if name == "tiny":
        return tiny_shape()
    if name not in KNOWN_SHAPES:
        raise ConfigError(f"unknown --shape {name!r}; known: tiny, {', '.join(KNOWN_SHAPES)}")
    return KNOWN_SHAPES[name]


def settings_for(run: RunConfig, quantization: str) -> RunConfig:
    return dataclasses.replace(run, model=dataclasses.replace(run.model, quantization=quantization))
