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
from arenapref.augment import flip_probabilities, swap_responses
from arenapref.config import RunConfig
from arenapref.heads import ClassifierHead, SftHead, make_head
from arenapref.io import atomic_dir, atomic_path, dir_sha256, stable_hash, write_json_atomic
from arenapref.modeling import (
    attach_new_adapter,
    compute_dtype,
    dtype_name,
    inference_dtype,
    load_base_model,
    load_tokenizer,
    load_trained_adapter,
    resolve_device,
    resolve_quantization,
)
from arenapref.predict import predict_probabilities
from arenapref.text import SEGMENTS, InputBuilder, encode_with_lengths
from arenapref.training import train_adapter

log = logging.getLogger(__name__)


def package_versions() -> dict[str, str]:
    import peft
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "polars": pl.__version__}


@dataclass
class Runtime:
    """Device, precision, tokenizer and input builder, resolved once per job."""

    device: torch.device
    dtype: torch.dtype  # compute dtype of training (and of loading the model)
    predict_dtype: torch.dtype  # arithmetic of inference
    quantization: str
    tokenizer: object
    builder: InputBuilder
    head: ClassifierHead | SftHead

    @classmethod
    def create(cls, run: RunConfig, checkpoint: Path, tokenizer_dir: Path | None = None) -> Runtime:
        """`tokenizer_dir` defaults to the checkpoint's own (an export ships the one it trained with)."""
        device = resolve_device(run.device)
        tokenizer = load_tokenizer(tokenizer_dir or checkpoint, run.model.trust_remote_code)
        quantization = resolve_quantization(run.model.quantization, device)
        dtype = compute_dtype(run.train.precision, device, quantization)
        head = make_head(run.model.head, tokenizer)
        return cls(
            device=device,
            dtype=dtype,
            predict_dtype=inference_dtype(run.predict.precision, device, dtype, quantization),
            quantization=quantization,
            tokenizer=tokenizer,
            builder=InputBuilder.from_tokenizer(tokenizer, run.model.max_length, run.model.shares,
                                                head.instruction, head.question, head.completion_tokens),
            head=head,
        )

    def encode(self, table: pl.DataFrame) -> list[list[int]]:
        return self.encode_with_lengths(table)[0]

    def encode_with_lengths(self, table: pl.DataFrame) -> tuple[list[list[int]], list[int]]:
        """Input ids, and each row's length before truncation."""
        return encode_with_lengths(self.tokenizer, {c: table[c].to_list() for c in SEGMENTS}, self.builder)

    def base_model(self, run: RunConfig, checkpoint: Path):
        return load_base_model(checkpoint, run.model, self.device, self.dtype, self.tokenizer.pad_token_id)

    def describe(self) -> dict:
        return {"head": self.head.name, "device": str(self.device), "dtype": dtype_name(self.dtype),
                "predict_dtype": dtype_name(self.predict_dtype), "quantization": self.quantization}


def training_rows(table: pl.DataFrame, fold: int, swap_augmentation: bool) -> pl.DataFrame:
    """The rows that train `fold`'s adapter: every row outside the fold, and with swap augmentation
    also their swapped copies. A copy is made only from a training row, so it never carries a
    validation row's conversation into training."""
    rows = table.filter(pl.col("fold") != fold)
    if rows.height == 0:
        raise ValueError(f"fold {fold}: no training rows (folds present: {sorted(table['fold'].unique())})")
    return pl.concat([rows, swap_responses(rows)]) if swap_augmentation else rows


def train_fold(data_path: Path, fold: int, checkpoint: Path, run: RunConfig,
               adapter_dir: Path, log_path: Path, resume_dir: Path) -> dict:
    """Train a fresh adapter on every row outside `fold`; write the adapter and a training log."""
    table = pl.read_parquet(data_path)
    train_rows = training_rows(table, fold, run.train.swap_augmentation)
    source_rows = table.filter(pl.col("fold") != fold).height
    rt = Runtime.create(run, checkpoint)
    input_ids = rt.encode(train_rows)
    labels = train_rows["label"].to_list()
    identity = {
        "config": run.training_hash(),
        "data": stable_hash([train_rows["id"].to_list(), labels]),
        "checkpoint": str(Path(checkpoint).resolve()),
    }
    torch.manual_seed(run.train.seed)  # the classification head's initial weights
    model = attach_new_adapter(rt.base_model(run, checkpoint), run.model)
    result = train_adapter(model, input_ids, labels, run.train, rt.device, rt.dtype,
                           rt.tokenizer.pad_token_id, resume_dir, identity, head=rt.head)
    with atomic_dir(adapter_dir) as staging:
        model.save_pretrained(staging, safe_serialization=True)
    lengths = np.array([len(x) for x in input_ids])
    summary = {
        "fold": fold,
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
        "versions": package_versions(),
        "history": result.history,
    }
    write_json_atomic(log_path, summary)
    shutil.rmtree(resume_dir, ignore_errors=True)  # the adapter is published; resume state is spent
    return summary


def _probability_frame(ids: list[int], probs: np.ndarray, **extra) -> pl.DataFrame:
    columns = {"id": ids, **{name: probs[:, k] for k, name in enumerate(LABEL_COLUMNS)}}
    columns.update(extra)
    return pl.DataFrame(columns)


def encode_for_prediction(rt: Runtime, run: RunConfig, rows: pl.DataFrame,
                          input_ids: list[list[int]] | None = None) -> list[list[int]]:
    """Input ids of `rows` (or the given ones), followed by those of their swapped copies when swap TTA is on."""
    input_ids = rt.encode(rows) if input_ids is None else list(input_ids)
    if run.predict.swap_tta:
        # Both orders in one call: a row and its swap have about the same length, so they share batches.
        input_ids += rt.encode(swap_responses(rows))
    return input_ids


def predict_rows(model, rt: Runtime, run: RunConfig, rows: pl.DataFrame, desc: str,
                 input_ids: list[list[int]] | None = None) -> tuple[np.ndarray, dict]:
    """Probabilities for `rows`; with swap TTA the average of both orders, and the two halves as
    extra columns (`<label>_direct`, `<label>_swapped`) so the gain can be measured. `input_ids`:
    encode_for_prediction's result, when the caller reuses it across folds."""
    if input_ids is None:
        input_ids = encode_for_prediction(rt, run, rows)
    probs = predict_probabilities(model, input_ids, rt.device, rt.predict_dtype, rt.tokenizer.pad_token_id,
                                  run.predict.tokens_per_batch, run.predict.max_batch_rows, desc=desc, head=rt.head)
    if not run.predict.swap_tta:
        return probs, {}
    direct, swapped = probs[: rows.height], flip_probabilities(probs[rows.height :])
    columns = {}
    for k, label in enumerate(LABEL_COLUMNS):
        columns[f"{label}_direct"] = direct[:, k]
        columns[f"{label}_swapped"] = swapped[:, k]
    return (direct + swapped) / 2, columns


def predict_fold(data_path: Path, test_path: Path, fold: int, checkpoint: Path, adapter_dir: Path,
                 run: RunConfig, oof_path: Path, test_out_path: Path) -> dict:
    """Predict the fold's validation rows (out-of-fold) and every test row with the fold's adapter."""
    table = pl.read_parquet(data_path)
    valid = table.filter(pl.col("fold") == fold)
    test = pl.read_parquet(test_path)
    rt = Runtime.create(run, checkpoint)
    model = load_trained_adapter(rt.base_model(run, checkpoint), adapter_dir)
    outputs = {}
    for name, rows, path in (("oof", valid, oof_path), ("test", test, test_out_path)):
        input_ids, untruncated = rt.encode_with_lengths(rows)
        probs, tta_columns = predict_rows(model, rt, run, rows, name, encode_for_prediction(rt, run, rows, input_ids))
        extra = {"fold": [fold] * rows.height, **tta_columns}
        if name == "oof":
            extra |= {"label": rows["label"].to_list(), "tokens": [len(x) for x in input_ids],
                      "tokens_untruncated": untruncated}
        frame = _probability_frame(rows["id"].to_list(), probs, **extra)
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)
        outputs[name] = frame.height
    return {"fold": fold, "rows": outputs, "adapter_sha256": dir_sha256(adapter_dir), **rt.describe()}
