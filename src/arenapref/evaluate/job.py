"""The prediction rule's job (`arenapref-predict-fold`, rules/train.smk): a fold's adapter predicts its
validation rows (out of fold) and every test row, with swap TTA's two halves kept beside the mean."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.config import RunConfig
from arenapref.data.augment import swap_responses, tta_halves
from arenapref.evaluate.predict import predict_probabilities
from arenapref.io import atomic_path, dir_sha256
from arenapref.model.modeling import (
    for_inference,
    load_trained_adapter,
)
from arenapref.model.runtime import Runtime, check_inference_memory

log = logging.getLogger(__name__)


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
        # Prediction keeps no activations for a backward pass: checkpointing is the training job's
        # (its train_log.json), and on CUDA with auto it is not even decided here.
        **{key: value for key, value in rt.describe().items() if key != "gradient_checkpointing"},
    }
