"""Where a job runs and how: the device (a GPU slot of its own), precision, quantization, tokenizer and
input builder, resolved once per job by the training and prediction jobs alike; the memory check
before an inference run, and the package versions every output records."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from arenapref.config import RunConfig
from arenapref.data.text import SEGMENTS, InputBuilder, encode_with_lengths
from arenapref.errors import DeviceError
from arenapref.model.allocator import keep_freed_memory
from arenapref.model.heads import ClassifierHead, SftHead, make_head
from arenapref.model.modeling import (
    check_checkpoint,
    checkpoint_quantization,
    compute_dtype,
    dtype_name,
    inference_dtype,
    load_base_model,
    load_tokenizer,
    request_deterministic_cublas,
    resolve_checkpointing,
    resolve_device,
    resolve_quantization,
    use_deterministic_cuda,
)
from arenapref.model.plan import CUDA_CONTEXT_BYTES

if TYPE_CHECKING:  # the model's side runs where polars is not installed (the GPU benchmark)
    import polars as pl

log = logging.getLogger(__name__)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version  # not an import of peft (bitsandbytes)

    try:
        polars_version = version("polars")
    except PackageNotFoundError:
        polars_version = "not installed"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "peft": version("peft"),
        "polars": polars_version,
    }


def claim_device(requested: str) -> tuple[torch.device, dict]:
    """The device of this job. With several GPUs visible, a GPU of its own: concurrent Snakemake jobs
    (`--resources gpu=N`) each claim a free slot, held until the process ends."""
    device = resolve_device(requested)
    if device.type != "cuda":
        return device, {}
    from arenapref.model.gpu_slots import acquire_gpu_slot

    slot = acquire_gpu_slot(torch.cuda.device_count())
    device = torch.device("cuda", slot.index)
    torch.cuda.set_device(device)  # kernels that use the current device (bitsandbytes) follow it
    properties = torch.cuda.get_device_properties(device)
    info = {
        **slot.describe(),
        "name": properties.name,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
        "memory_gib": round(properties.total_memory / 2**30, 1),
    }
    log.info(
        "GPU %s (%s, compute capability %s, %.1f GiB)",
        slot.physical_id,
        info["name"],
        info["capability"],
        info["memory_gib"],
    )
    return device, info


@dataclass
class Runtime:
    """Device, precision, tokenizer and input builder, resolved once per job."""

    device: torch.device
    dtype: torch.dtype  # compute dtype of training (and of loading the model)
    predict_dtype: torch.dtype  # arithmetic of inference
    quantization: str
    # train.gradient_checkpointing resolved; None for auto on CUDA until the training job's memory
    # plan decides it (train.job.plan_training_memory), which needs the fold's longest row.
    gradient_checkpointing: bool | None
    tokenizer: object
    builder: InputBuilder
    head: ClassifierHead | SftHead
    gpu: dict

    @classmethod
    def create(cls, run: RunConfig, checkpoint: Path, tokenizer_dir: Path | None = None) -> Runtime:
        """`tokenizer_dir` defaults to the checkpoint's own (an export ships the one it trained with)."""
        # First, before a GPU is claimed or anything loads: a missing, empty or incomplete checkpoint is
        # one line naming what is missing, not a traceback from deep inside a tokenizer.
        check_checkpoint(checkpoint, tokenizer_dir or True)
        if run.device != "cpu":
            request_deterministic_cublas(run.train.deterministic)  # before claim_device touches the GPU
        device, gpu = claim_device(run.device)
        if device.type == "cuda":
            use_deterministic_cuda(run.train.deterministic)
        else:
            keep_freed_memory()  # tensors in host memory: reuse freed pages instead of faulting in new ones
        tokenizer = load_tokenizer(tokenizer_dir or checkpoint, run.model.trust_remote_code)
        quantization = resolve_quantization(run.model.quantization, device, checkpoint_quantization(checkpoint))
        dtype = compute_dtype(run.train.precision, device, quantization)
        head = make_head(run.model.head, tokenizer)
        return cls(
            device=device,
            dtype=dtype,
            predict_dtype=inference_dtype(run.predict.precision, device, dtype, quantization),
            quantization=quantization,
            gradient_checkpointing=None
            if run.train.gradient_checkpointing == "auto" and device.type == "cuda"
            else resolve_checkpointing(run.train.gradient_checkpointing, device.type),
            tokenizer=tokenizer,
            builder=InputBuilder.from_tokenizer(
                tokenizer,
                run.model.max_length,
                run.model.shares,
                head.instruction,
                head.question,
                head.completion_tokens,
            ),
            head=head,
            gpu=gpu,
        )

    def encode(self, table: pl.DataFrame) -> list[list[int]]:
        return self.encode_with_lengths(table)[0]

    def encode_with_lengths(self, table: pl.DataFrame) -> tuple[list[list[int]], list[int]]:
        """Input ids, and each row's length before truncation."""
        return encode_with_lengths(self.tokenizer, {c: table[c].to_list() for c in SEGMENTS}, self.builder)

    def base_model(self, run: RunConfig, checkpoint: Path):
        return load_base_model(checkpoint, run.model, self.device, self.dtype, self.tokenizer.pad_token_id)

    def describe(self) -> dict:
        described = {
            "head": self.head.name,
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
            "predict_dtype": dtype_name(self.predict_dtype),
            "quantization": self.quantization,
            "gradient_checkpointing": self.gradient_checkpointing,
        }
        return described | ({"gpu": self.gpu} if self.gpu else {})


def check_inference_memory(rt: Runtime, run: RunConfig, checkpoint: Path) -> None:
    """On a GPU, stop before loading when an inference batch would not fit the free memory."""
    if rt.device.type != "cuda":
        return
    from arenapref.model.plan import GIB, Arithmetic, ModelShape, fits, inference_memory, tokens_per_batch_that_fit

    shape = ModelShape.from_checkpoint(checkpoint, run)
    arith = Arithmetic("cuda", rt.predict_dtype.itemsize, rt.quantization)
    peak = inference_memory(shape, run, arith)["peak"]
    free, total = torch.cuda.mem_get_info(rt.device)
    log.info("memory plan: %.2f GiB at the peak of an inference batch; %.1f GiB free", peak / GIB, free / GIB)
    if not fits(peak, free + CUDA_CONTEXT_BYTES):
        tokens = tokens_per_batch_that_fit(shape, run, arith, free + CUDA_CONTEXT_BYTES)
        raise DeviceError(
            f"inference would need about {peak / GIB:.1f} GiB at its peak but {free / GIB:.1f} of {total / GIB:.1f} "
            f"GiB are free on {rt.gpu.get('name', rt.device)}; "
            + (f"set predict.tokens_per_batch: {tokens}" if tokens else "lower model.max_length")
        )


def measured_peak(device: torch.device) -> dict:
    """torch's own count of the peak on a GPU, to set beside the plan in the training log."""
    if device.type != "cuda":
        return {}
    return {
        "measured_peak": round(torch.cuda.max_memory_allocated(device) / 2**30, 3),
        "measured_reserved": round(torch.cuda.max_memory_reserved(device) / 2**30, 3),
    }
