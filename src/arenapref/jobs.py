"""The per-fold jobs behind the training and prediction rules: load, encode, run, write."""

from __future__ import annotations

import logging
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from arenapref import LABEL_COLUMNS
from arenapref.allocator import keep_freed_memory
from arenapref.augment import swap_responses, tta_halves
from arenapref.config import RunConfig
from arenapref.errors import DeviceError
from arenapref.heads import ClassifierHead, SftHead, make_head
from arenapref.io import atomic_dir, atomic_path, dir_sha256, stable_hash, write_json_atomic
from arenapref.modeling import (
    attach_new_adapter,
    check_checkpoint,
    checkpoint_quantization,
    compute_dtype,
    dtype_name,
    enable_gradient_checkpointing,
    for_inference,
    inference_dtype,
    load_base_model,
    load_tokenizer,
    load_trained_adapter,
    lora_layer_indices,
    request_deterministic_cublas,
    resolve_checkpointing,
    resolve_device,
    resolve_quantization,
    use_deterministic_cuda,
)
from arenapref.plan import CUDA_CONTEXT_BYTES
from arenapref.predict import predict_probabilities
from arenapref.text import SEGMENTS, InputBuilder, encode_with_lengths
from arenapref.training import Examples, fold_steps, require_report_backend, train_adapter

log = logging.getLogger(__name__)


def package_versions() -> dict[str, str]:
    import peft
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "polars": pl.__version__,
    }


def claim_device(requested: str) -> tuple[torch.device, dict]:
    """The device of this job. With several GPUs visible, a GPU of its own: concurrent Snakemake jobs
    (`--resources gpu=N`) each claim a free slot, held until the process ends."""
    device = resolve_device(requested)
    if device.type != "cuda":
        return device, {}
    from arenapref.gpu_slots import acquire_gpu_slot

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
    gradient_checkpointing: bool
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
            gradient_checkpointing=resolve_checkpointing(run.train.gradient_checkpointing, device.type),
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


def plan_training_memory(rt: Runtime, run: RunConfig, checkpoint: Path, longest: int) -> dict:
    """The memory plan of this fold's training (at its longest batch); on a GPU, stops before
    any weight is loaded when the plan does not fit the free memory, naming settings that would."""
    from arenapref.plan import GIB, Arithmetic, ModelShape, describe_change, fits, settings_that_fit, training_memory

    shape = ModelShape.from_checkpoint(checkpoint, run)
    arith = Arithmetic(rt.device.type, rt.dtype.itemsize, rt.quantization)
    planned = training_memory(shape, run, arith, rt.gradient_checkpointing, run.train.batch_size, longest)
    log.info(
        "memory plan: %.2f GiB at the peak of a training step (%s)",
        planned["peak"] / GIB,
        ", ".join(f"{name} {value / GIB:.2f}" for name, value in planned.items() if name != "peak"),
    )
    if rt.device.type == "cuda":
        free, total = torch.cuda.mem_get_info(rt.device)
        # The CUDA context already holds its share of `total - free`: compare with what is free.
        if not fits(planned["peak"], free + CUDA_CONTEXT_BYTES):
            change = settings_that_fit(shape, run, arith, free + CUDA_CONTEXT_BYTES, rt.gradient_checkpointing)
            raise DeviceError(
                f"training would need about {planned['peak'] / GIB:.1f} GiB at its peak ({run.train.batch_size} rows "
                f"x {longest} tokens, gradient checkpointing {'on' if rt.gradient_checkpointing else 'off'}) but "
                f"{free / GIB:.1f} of {total / GIB:.1f} GiB are free on {rt.gpu.get('name', rt.device)}; settings "
                f"that fit: {describe_change(change)}"
            )
    return {name: round(value / GIB, 3) for name, value in planned.items()}


def check_inference_memory(rt: Runtime, run: RunConfig, checkpoint: Path) -> None:
    """On a GPU, stop before loading when an inference batch would not fit the free memory."""
    if rt.device.type != "cuda":
        return
    from arenapref.plan import GIB, Arithmetic, ModelShape, fits, inference_memory, tokens_per_batch_that_fit

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


def training_rows(table: pl.DataFrame, fold: int | None, swap_augmentation: bool) -> pl.DataFrame:
    """The rows that train `fold`'s adapter: every row outside the fold (every row for the full
    fit, fold None), and with swap augmentation also their swapped copies. A copy is made only from
    a training row, so it never carries a validation row's conversation into training."""
    rows = table if fold is None else table.filter(pl.col("fold") != fold)
    if rows.height == 0:
        raise ValueError(f"fold {fold}: no training rows (folds present: {sorted(table['fold'].unique())})")
    return pl.concat([rows, swap_responses(rows)]) if swap_augmentation else rows


def train_fold(
    data_path: Path,
    fold: int | None,
    checkpoint: Path,
    run: RunConfig,
    adapter_dir: Path,
    log_path: Path,
    resume_dir: Path,
) -> dict:
    """Train a fresh adapter on every row outside `fold`; write the adapter and a training log.

    fold None is the full fit: every row, for as many optimizer steps as a fold takes (fold 0's),
    so it costs a fold's time and follows a fold's learning-rate schedule."""
    require_report_backend(run.train.report_to)  # before anything loads
    table = pl.read_parquet(data_path)
    train_rows = training_rows(table, fold, run.train.swap_augmentation)
    source_rows = table.height if fold is None else table.filter(pl.col("fold") != fold).height
    max_steps = None
    if fold is None:
        max_steps = fold_steps(training_rows(table, 0, run.train.swap_augmentation).height, run.train)
    rt = Runtime.create(run, checkpoint)
    input_ids = rt.encode(train_rows)
    labels = train_rows["label"].to_list()
    identity = {
        "config": run.training_hash(),
        "data": stable_hash([train_rows["id"].to_list(), labels]),
        "checkpoint": str(Path(checkpoint).resolve()),
    }
    memory_plan = plan_training_memory(rt, run, checkpoint, max(len(x) for x in input_ids))
    torch.manual_seed(run.train.seed)  # the classification head's initial weights
    model = attach_new_adapter(rt.base_model(run, checkpoint), run.model)
    if rt.gradient_checkpointing:
        enable_gradient_checkpointing(model, lora_layer_indices(model.config.num_hidden_layers, run.model.lora.layers))
    result = train_adapter(
        model,
        Examples(input_ids, labels, rt.tokenizer.pad_token_id),
        run.train,
        rt.device,
        rt.dtype,
        resume_dir,
        identity,
        head=rt.head,
        max_steps=max_steps,
        # Beside the training log: results/folds/<fold>/tensorboard or .../mlflow.
        report_dir=None if run.train.report_to == "none" else log_path.parent / run.train.report_to,
    )
    with atomic_dir(adapter_dir) as staging:
        model.save_pretrained(staging, safe_serialization=True)
    lengths = np.array([len(x) for x in input_ids])
    summary = {
        "fold": "full" if fold is None else fold,
        "rows": train_rows.height,
        "source_rows": source_rows,
        "swap_augmentation": run.train.swap_augmentation,
        "tokens_per_row": {"mean": float(lengths.mean()), "max": int(lengths.max())},
        "max_length": run.model.max_length,
        "optimizer_steps": result.optimizer_steps,
        "resumed_from_chunk": result.resumed_from_chunk,
        "seconds": round(result.seconds, 2),
        "seconds_this_run": round(result.session_seconds, 2),
        "tokens_per_second": round(result.tokens / max(result.session_seconds, 1e-9), 1),
        "padding_efficiency": round(result.tokens / max(result.tokens_computed, 1), 4),
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "config_hash": run.training_hash(),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": dir_sha256(checkpoint),
        "adapter_sha256": dir_sha256(adapter_dir),
        "data_sha256": identity["data"],
        "runtime": rt.describe(),
        "memory_gib": {"planned": memory_plan, **measured_peak(rt.device)},
        "versions": package_versions(),
        "history": result.history,
    }
    write_json_atomic(log_path, summary)
    shutil.rmtree(resume_dir, ignore_errors=True)  # the adapter is published; resume state is spent
    return summary


def measured_peak(device: torch.device) -> dict:
    """torch's own count of the peak on a GPU, to set beside the plan in the training log."""
    if device.type != "cuda":
        return {}
    return {
        "measured_peak": round(torch.cuda.max_memory_allocated(device) / 2**30, 3),
        "measured_reserved": round(torch.cuda.max_memory_reserved(device) / 2**30, 3),
    }


def _probability_frame(ids: list[int], probs: np.ndarray, **extra) -> pl.DataFrame:
    columns = {"id": ids, **{name: probs[:, k] for k, name in enumerate(LABEL_COLUMNS)}}
    columns.update(extra)
    return pl.DataFrame(columns)


def encode_for_prediction(
    rt: Runtime, run: RunConfig, rows: pl.DataFrame, input_ids: list[list[int]] | None = None
) -> list[list[int]]:
    """Input ids of `rows` (or the given ones), followed by those of their swapped copies when swap TTA is on."""
    input_ids = rt.encode(rows) if input_ids is None else list(input_ids)
    if run.predict.swap_tta:
        # Both orders in one call: a row and its swap have about the same length, so they share batches.
        input_ids += rt.encode(swap_responses(rows))
    return input_ids


def predict_rows(
    model, rt: Runtime, run: RunConfig, rows: pl.DataFrame, desc: str, input_ids: list[list[int]] | None = None
) -> tuple[np.ndarray, dict]:
    """Probabilities for `rows`; with swap TTA the average of both orders, and the two halves as
    extra columns (`<label>_direct`, `<label>_swapped`) so the gain can be measured. `input_ids`:
    encode_for_prediction's result, when the caller reuses it across folds."""
    if input_ids is None:
        input_ids = encode_for_prediction(rt, run, rows)
    probs = predict_probabilities(
        model,
        input_ids,
        rt.device,
        rt.predict_dtype,
        rt.tokenizer.pad_token_id,
        run.predict.tokens_per_batch,
        run.predict.max_batch_rows,
        desc=desc,
        head=rt.head,
    )
    if not run.predict.swap_tta:
        return probs, {}
    direct, swapped = tta_halves(probs, rows.height)
    columns = {}
    for k, label in enumerate(LABEL_COLUMNS):
        columns[f"{label}_direct"] = direct[:, k]
        columns[f"{label}_swapped"] = swapped[:, k]
    return (direct + swapped) / 2, columns


def predict_fold(
    data_path: Path,
    test_path: Path,
    fold: int | None,
    checkpoint: Path,
    adapter_dir: Path,
    run: RunConfig,
    oof_path: Path | None,
    test_out_path: Path,
) -> dict:
    """Predict the fold's validation rows (out-of-fold) and every test row with the fold's adapter;
    the full fit (fold None) has no validation rows and predicts the test rows only."""
    table = pl.read_parquet(data_path)
    test = pl.read_parquet(test_path)
    rt = Runtime.create(run, checkpoint)
    check_inference_memory(rt, run, checkpoint)
    model = for_inference(load_trained_adapter(rt.base_model(run, checkpoint), adapter_dir), rt.predict_dtype)
    outputs = {}
    jobs = [("test", test, test_out_path)]
    if fold is not None:
        jobs.insert(0, ("oof", table.filter(pl.col("fold") == fold), oof_path))
    for name, rows, path in jobs:
        input_ids, untruncated = rt.encode_with_lengths(rows)
        probs, tta_columns = predict_rows(model, rt, run, rows, name, encode_for_prediction(rt, run, rows, input_ids))
        extra = {"fold": [-1 if fold is None else fold] * rows.height, **tta_columns}
        if name == "oof":
            extra |= {
                "label": rows["label"].to_list(),
                "tokens": [len(x) for x in input_ids],
                "tokens_untruncated": untruncated,
            }
        frame = _probability_frame(rows["id"].to_list(), probs, **extra)
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)
        outputs[name] = frame.height
    return {
        "fold": "full" if fold is None else fold,
        "rows": outputs,
        "adapter_sha256": dir_sha256(adapter_dir),
        **rt.describe(),
    }
