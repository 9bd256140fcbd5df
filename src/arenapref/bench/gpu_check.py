"""The GPU check (`make gpu-check`): the real path on the GPU at hand, in minutes, offline.

A Llama-3.1-8B-shaped model with random weights (the same memory and FLOPs as the real one) in
nf4 trains a few steps at 4 x 2048 tokens with and without gradient checkpointing, in bf16 and in
fp16 with the gradient scaler; its peak memory is set against the planner's and its real tokens/s
measured. Then it predicts at the configured tokens per batch (tokens/s and the fraction of the
measured matmul rate), and the whole Snakemake pipeline runs on the device with a tiny random
Llama. Imports stay few (torch, transformers, peft, bitsandbytes, jsonschema): the pipeline part
is skipped with a note where snakemake or polars are missing.

On a CPU (the tests) the same code runs with a tiny shape and no quantization.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from arenapref.bench.gpu_common import guarded, importable, machine, matmul_ceiling, settings_for
from arenapref.bench.hardware import (
    forward_flops,
    non_embedding_parameters,
    training_flops,
)
from arenapref.bench.memory import measure_inference_batch, measure_training_step
from arenapref.bench.random_model import PAD_ID, random_checkpoint, release_memory
from arenapref.config import RunConfig
from arenapref.model.batching import rows_per_batch
from arenapref.model.heads import ClassifierHead
from arenapref.model.modeling import (
    attach_new_adapter,
    cuda_has_native_bf16,
    dtype_name,
    enable_gradient_checkpointing,
    inference_precision,
    load_base_model,
    lora_layer_indices,
    needs_grad_scaler,
    use_deterministic_cuda,
)
from arenapref.model.plan import GIB, Arithmetic, ModelShape, inference_memory, training_memory
from arenapref.workflow import run_workflow

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(rows: int, length: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    if rows > 1:
        mask[0, length // 2 :] = 0  # one padded row: the attention mask is passed, as in real batches
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.arange(rows) % 3}


def _training_setup(
    checkpoint: Path, shape: ModelShape, run: RunConfig, device: torch.device, dtype: torch.dtype, checkpointing: bool
):
    """A fresh adapter (seed 0) on the base model, its fp32 trainable parameters, optimizer and scaler."""
    from arenapref.train.training import make_optimizer

    torch.manual_seed(0)
    model = attach_new_adapter(load_base_model(checkpoint, run.model, device, dtype, PAD_ID), run.model)
    if checkpointing:
        enable_gradient_checkpointing(model, lora_layer_indices(shape.layers, run.model.lora.layers))
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    optimizer = make_optimizer(named, run.train, device)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(dtype))
    model.train()
    return model, trainable, optimizer, scaler


def _train_steps(model, head, batch: dict, dtype: torch.dtype, optimizer, scaler, steps: int) -> list[torch.Tensor]:
    """`steps` optimizer steps on one batch; each step's loss, left on the device."""
    device_type = batch["input_ids"].device.type
    losses = []
    for _ in range(steps):
        with torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
            loss = head.loss(model, batch, 0.0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return losses


def determinism_case(
    checkpoint: Path,
    shape: ModelShape,
    run: RunConfig,
    device: torch.device,
    dtype: torch.dtype,
    rows: int,
    length: int,
    steps: int,
) -> dict:
    """Two trainings from the same seed on the same batch (train.deterministic's switches as
    configured): how far apart their losses and their adapters end. Zero on a CPU."""
    checkpointing = device.type == "cuda"
    batch = {k: v.to(device) for k, v in _batch(rows, length, shape.vocab).items()}
    runs = []
    for _ in range(2):
        model, trainable, optimizer, scaler = _training_setup(checkpoint, shape, run, device, dtype, checkpointing)
        losses = _train_steps(model, ClassifierHead(), batch, dtype, optimizer, scaler, steps)
        runs.append((torch.stack(losses).float().cpu(), [p.detach().float().cpu() for p in trainable]))
        del model, trainable, optimizer
        release_memory(device)
    (losses_a, weights_a), (losses_b, weights_b) = runs
    return {
        "dtype": dtype_name(dtype),
        "deterministic": run.train.deterministic,
        "gradient_checkpointing": checkpointing,
        "rows": rows,
        "length": length,
        "steps": steps,
        "max_loss_difference": float((losses_a - losses_b).abs().max()),
        "max_adapter_difference": max(float((a - b).abs().max()) for a, b in zip(weights_a, weights_b, strict=True)),
    }


def training_case(
    checkpoint: Path,
    shape: ModelShape,
    run: RunConfig,
    device: torch.device,
    dtype: torch.dtype,
    checkpointing: bool,
    rows: int,
    length: int,
    steps: int,
) -> dict:
    """Peak memory of a step against the plan, and real tokens/s over `steps` more steps."""
    model, trainable, optimizer, scaler = _training_setup(checkpoint, shape, run, device, dtype, checkpointing)
    head = ClassifierHead()
    batch = {k: v.to(device) for k, v in _batch(rows, length, shape.vocab).items()}
    measured = measure_training_step(model, head, batch, dtype, optimizer, scaler)
    _sync(device)
    started = time.perf_counter()
    loss = _train_steps(model, head, batch, dtype, optimizer, scaler, steps)[-1]
    _sync(device)
    seconds = time.perf_counter() - started
    arith = Arithmetic(device.type, dtype.itemsize, run.model.quantization)
    planned = training_memory(shape, run, arith, checkpointing, rows, length)
    real_tokens = int(batch["attention_mask"].sum()) * steps
    adapted = len(lora_layer_indices(shape.layers, run.model.lora.layers)) / shape.layers
    flops = training_flops(
        [length] * rows * steps,  # every row is full length: the rate the hardware ran at
        non_embedding_parameters(model),
        shape.layers,
        shape.heads * shape.head_dim,
        backward_share=adapted,
        recompute_share=adapted if checkpointing else 0.0,
    )
    ceiling = matmul_ceiling(device, dtype).flops_per_s
    result = {
        "dtype": dtype_name(dtype),
        "gradient_checkpointing": checkpointing,
        "rows": rows,
        "length": length,
        "measured_peak_gib": round(measured["peak"] / GIB, 3),
        "planned_peak_gib": round(planned["peak"] / GIB, 3),
        "planned_over_measured": round(planned["peak"] / measured["peak"], 3),
        "saved_activations_gib": round(measured["saved_activations"] / GIB, 3),
        "tokens_per_second": round(real_tokens / seconds, 1),
        "fraction_of_matmul_rate": float(f"{flops / seconds / ceiling:.3g}"),  # 3 significant digits, never 0
        "final_loss": round(float(loss.detach()), 4),
    }
    if scaler.is_enabled():
        result["loss_scale"] = scaler.get_scale()
    del model, optimizer, loss
    release_memory(device)
    return result


def inference_case(
    checkpoint: Path, shape: ModelShape, run: RunConfig, device: torch.device, dtype: torch.dtype, batches: int
) -> dict:
    """Peak memory of a full batch against the plan; tokens/s and the fraction of the matmul rate."""
    length = run.model.max_length
    rows = rows_per_batch(length, run.predict.tokens_per_batch, run.predict.max_batch_rows)
    model = attach_new_adapter(load_base_model(checkpoint, run.model, device, dtype, PAD_ID), run.model)
    model = inference_precision(model, dtype)  # as the hand-in holds it, adapter apart
    head = ClassifierHead()
    batch = _batch(rows, length, shape.vocab)
    peak = measure_inference_batch(model, head, batch["input_ids"], batch["attention_mask"], dtype)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    _sync(device)
    started = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(batches):
            head.class_logits(model, ids, mask)
    _sync(device)
    seconds = time.perf_counter() - started
    lengths = mask.sum(dim=1).tolist() * batches
    flops = forward_flops(lengths, non_embedding_parameters(model), shape.layers, shape.heads * shape.head_dim)
    # The padded tokens are computed too: the rate the hardware ran at counts them.
    computed = forward_flops(
        [length] * rows * batches, non_embedding_parameters(model), shape.layers, shape.heads * shape.head_dim
    )
    ceiling = matmul_ceiling(device, dtype).flops_per_s
    planned = inference_memory(shape, run, Arithmetic(device.type, dtype.itemsize, run.model.quantization))["peak"]
    del model
    release_memory(device)
    return {
        "dtype": dtype_name(dtype),
        "rows": rows,
        "length": length,
        "measured_peak_gib": round(peak / GIB, 3),
        "planned_peak_gib": round(planned / GIB, 3),
        "planned_over_measured": round(planned / peak, 3),
        "tokens_per_second": round(sum(lengths) / seconds, 1),
        "fraction_of_matmul_rate": float(f"{computed / seconds / ceiling:.3g}"),
        "real_flop_per_second": round(flops / seconds / 1e12, 2),
        "matmul_tflops": round(ceiling / 1e12, 1),
    }


def pipeline_case(out_dir: Path, device: str) -> dict:
    """The whole workflow on the device with a tiny random Llama, to a validated submission."""
    missing = [name for name in ("snakemake", "polars") if not importable(name)]
    if missing:
        return {"skipped": f"{', '.join(missing)} not installed"}
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_llama import build_tiny_llama

    checkpoint = build_tiny_llama(out_dir / "tiny-llama")
    workdir = out_dir / "pipeline"
    config = {
        "model": {"checkpoint": str(checkpoint), "max_length": 128, "quantization": "none"},
        "data": {"sample": {"n_train": 60, "n_test": 10}},
        "folds": {"n": 2},
        "train": {"epochs": 1, "optimizer": "adamw", "chunk_size": 16},
        "device": device,
    }
    started = time.perf_counter()
    done = run_workflow(
        workdir, config, ["results/submission.csv", "results/metrics.json"], cores=2, check=False, timeout=900
    )
    result = {"returncode": done.returncode, "seconds": round(time.perf_counter() - started, 1)}
    if done.returncode != 0:
        return result | {"error": done.stderr[-2000:]}
    metrics = json.loads((workdir / "results" / "metrics.json").read_text())
    train_log = json.loads((workdir / "results" / "folds" / "fold0" / "train_log.json").read_text())
    return result | {
        "oof_log_loss": metrics["overall"]["log_loss"],
        "runtime": train_log["runtime"],
        "memory_gib": train_log.get("memory_gib"),
    }


def run_gpu_check(
    run: RunConfig,
    shape_dict: dict,
    device: torch.device,
    rows: int,
    length: int,
    steps: int,
    predict_batches: int,
    pipeline: bool,
    work_dir: Path | None = None,
) -> dict:
    """Every case in turn; a case that fails (out of memory, a missing kernel) is recorded, not fatal."""
    started = time.perf_counter()
    shape = ModelShape.from_dict(shape_dict, run)
    report: dict = {
        "machine": machine(device),
        "date": time.strftime("%Y-%m-%d"),
        "quantization": run.model.quantization,
        "training": [],
        "inference": [],
    }
    with tempfile.TemporaryDirectory(dir=work_dir) as work:
        if device.type == "cuda":  # as the pipeline's jobs run (train.deterministic)
            use_deterministic_cuda(run.train.deterministic)
        checkpoint = random_checkpoint(Path(work) / "model", shape_dict, device)
        bf16_native = device.type != "cuda" or cuda_has_native_bf16(device)
        cases = [(torch.bfloat16, True), (torch.bfloat16, False), (torch.float16, True)]
        if not bf16_native:  # bf16 is only emulated there: measure what auto picks
            cases = [(torch.float16, True), (torch.float16, False)]
        for dtype, checkpointing in cases:
            log.info("training: %s, gradient checkpointing %s", dtype_name(dtype), checkpointing)
            report["training"].append(
                guarded(
                    device, training_case, checkpoint, shape, run, device, dtype, checkpointing, rows, length, steps
                )
            )
        dtype = torch.bfloat16 if bf16_native else torch.float16
        log.info("determinism: two trainings from one seed, %s", dtype_name(dtype))
        report["determinism"] = guarded(
            device, determinism_case, checkpoint, shape, run, device, dtype, rows, length, steps
        )
        # Inference in each weight format a user may pick (on CUDA; a CPU has no 4- or 8-bit kernels
        # here): a format that does not fit records the error and the next one runs.
        formats = [run.model.quantization]
        if device.type == "cuda":
            formats += [q for q in ("nf4", "int8", "none") if q != run.model.quantization]
        for quantization in formats:
            log.info(
                "inference: %s %s, %d tokens a batch", quantization, dtype_name(dtype), run.predict.tokens_per_batch
            )
            case_run = settings_for(run, quantization)
            case_shape = ModelShape.from_dict(shape_dict, case_run)
            report["inference"].append(
                {"quantization": quantization}
                | guarded(device, inference_case, checkpoint, case_shape, case_run, device, dtype, predict_batches)
            )
        if pipeline:
            log.info("the Snakemake pipeline with a tiny random Llama")
            report["pipeline"] = pipeline_case(Path(work), "cuda" if device.type == "cuda" else "cpu")
    # Every fraction above is over these measured ceilings, set beside the device's rated peak.
    measured_dtypes = sorted({case_dtype for case_dtype, _ in cases} | {dtype}, key=str)
    report["matmul_ceiling"] = [matmul_ceiling(device, case_dtype).as_dict() for case_dtype in measured_dtypes]
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
