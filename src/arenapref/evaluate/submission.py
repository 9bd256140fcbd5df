"""Fold ensembling and the submission file, validated before it is written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.data.parsing import SUBMISSION_COLUMNS, parse_ids, read_csv_strict
from arenapref.data.row_kinds import rule_kinds
from arenapref.errors import SubmissionError
from arenapref.evaluate.ensemble import Postprocessing
from arenapref.io import atomic_path


def average_folds(test_paths: Sequence[str | Path]) -> pl.DataFrame:
    """Mean test probabilities over folds; every fold must have predicted the same ids."""
    frames = [pl.read_parquet(p).sort("id") for p in test_paths]
    if not frames:
        raise SubmissionError("no fold predictions to average")
    ids = frames[0]["id"]
    for path, frame in zip(test_paths, frames, strict=True):
        if not frame["id"].equals(ids):
            raise SubmissionError(f"{path}: predicts a different set of test ids than {test_paths[0]}")
    stacked = np.stack([f.select(LABEL_COLUMNS).to_numpy() for f in frames])
    mean = stacked.mean(axis=0)
    mean = mean / mean.sum(axis=1, keepdims=True)
    return pl.DataFrame({"id": ids, **{c: mean[:, k] for k, c in enumerate(LABEL_COLUMNS)}})


def sample_submission_ids(path: str | Path) -> list[int]:
    csv = read_csv_strict(path, SUBMISSION_COLUMNS)
    return parse_ids(csv.frame, path, csv.line)


def validate_submission(submission: pl.DataFrame, expected_ids: Sequence[int], tolerance: float = 1e-6) -> None:
    """Same ids in the same order as sample_submission, probabilities in [0, 1] summing to 1."""
    if list(submission.columns) != list(SUBMISSION_COLUMNS):
        raise SubmissionError(f"columns {submission.columns}, expected {list(SUBMISSION_COLUMNS)}")
    ids = submission["id"].to_list()
    if len(ids) != len(expected_ids):
        raise SubmissionError(f"{len(ids)} rows, sample_submission has {len(expected_ids)}")
    if ids != list(expected_ids):
        missing = sorted(set(expected_ids) - set(ids))
        extra = sorted(set(ids) - set(expected_ids))
        if missing or extra:
            raise SubmissionError(f"ids differ from sample_submission: missing {missing[:10]}, unexpected {extra[:10]}")
        first = next(i for i, (a, b) in enumerate(zip(ids, expected_ids, strict=False)) if a != b)
        raise SubmissionError(f"ids are not in sample_submission order (first difference at row {first + 2})")
    probs = submission.select(LABEL_COLUMNS).to_numpy().astype(np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(probs).all(axis=1))
    if bad_rows.size:
        raise SubmissionError(f"NaN or infinite probability for id {ids[bad_rows[0]]}")
    out_of_range = np.flatnonzero(((probs < 0) | (probs > 1)).any(axis=1))
    if out_of_range.size:
        raise SubmissionError(f"probability outside [0, 1] for id {ids[out_of_range[0]]}: {probs[out_of_range[0]]}")
    off_sum = np.flatnonzero(np.abs(probs.sum(axis=1) - 1) > tolerance)
    if off_sum.size:
        raise SubmissionError(f"probabilities of id {ids[off_sum[0]]} sum to {probs[off_sum[0]].sum():.8f}, not 1")


def postprocess(
    averaged: pl.DataFrame,
    postprocessing: Postprocessing,
    features_path: str | Path | None,
    test_data: str | Path | None = None,
) -> pl.DataFrame:
    """Apply the OOF-fitted blend and temperature to fold-averaged test probabilities, and the rules
    for rows the model cannot judge (which need the test rows' texts: `test_data`, the preprocessed
    test parquet)."""
    feature_probs = None
    if postprocessing.features_blend_weight is not None:
        if features_path is None:
            raise SubmissionError(
                "the post-processing blends with the features baseline, but no features test predictions were given"
            )
        features = pl.read_parquet(features_path).sort("id")
        if not features["id"].equals(averaged["id"]):
            raise SubmissionError(f"{features_path}: predicts a different set of test ids than the folds")
        feature_probs = features.select(LABEL_COLUMNS).to_numpy()
    kinds = None
    if postprocessing.rules is not None:
        if test_data is None:
            raise SubmissionError(
                "the post-processing applies the rules for rows the model cannot judge, "
                "but the test rows were not given"
            )
        test = pl.read_parquet(test_data).sort("id")
        if not test["id"].equals(averaged["id"]):
            raise SubmissionError(f"{test_data}: holds a different set of test ids than the folds predicted")
        kinds = rule_kinds(test).to_numpy()
    probs = postprocessing.apply(averaged.select(LABEL_COLUMNS).to_numpy(), feature_probs, kinds)
    return averaged.with_columns(**{c: probs[:, k] for k, c in enumerate(LABEL_COLUMNS)})


def build_submission(
    test_paths: Sequence[str | Path],
    sample_submission: str | Path,
    postprocessing: Postprocessing | None = None,
    features_path: str | Path | None = None,
    test_data: str | Path | None = None,
) -> pl.DataFrame:
    expected = sample_submission_ids(sample_submission)
    averaged = average_folds(test_paths)
    if postprocessing is not None:
        averaged = postprocess(averaged, postprocessing, features_path, test_data)
    unexpected = sorted(set(averaged["id"].to_list()) - set(expected))
    if unexpected:
        # Kaggle scores exactly sample_submission's ids: a test row outside it means mismatched files.
        raise SubmissionError(
            f"{len(unexpected)} test.csv ids are not in {sample_submission}, "
            f"e.g. {unexpected[:10]}: are test.csv and sample_submission.csv from the same release?"
        )
    order = pl.DataFrame({"id": pl.Series(expected, dtype=averaged["id"].dtype)})
    submission = order.join(averaged, on="id", how="left", maintain_order="left")
    missing = submission.filter(pl.col(LABEL_COLUMNS[0]).is_null())["id"].to_list()
    if missing:
        raise SubmissionError(f"{len(missing)} sample_submission ids were not predicted, e.g. {missing[:10]}")
    validate_submission(submission, expected)
    return submission


def write_submission(submission: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        submission.write_csv(tmp, float_precision=8)
        # Check what was written, before it replaces anything: rounding must keep rows summing to 1.
        validate_submission(pl.read_csv(tmp), submission["id"].to_list())
