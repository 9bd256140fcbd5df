"""The modelling-options table: one pipeline run per head and swap-augmentation setting, each
scored with and without swap TTA and temperature scaling, and blended with the features baseline
(scripts/options_table.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from arenapref.evaluate.ensemble import score_options
from arenapref.evaluate.evaluation import probabilities
from arenapref.evaluate.metrics import accuracy


def score_variant(results: Path, config: dict) -> dict:
    """OOF log loss of one run: one A/B order and swap TTA, each without and with temperature
    scaling (cross-fitted: each fold scaled by a temperature fitted on the other folds)."""
    train = pl.read_parquet(results / "data" / "train.parquet").sort("id")
    oof = pl.read_parquet(results / "oof.parquet").sort("id")
    metrics = json.loads((results / "metrics.json").read_text())
    labels, folds = train["label"].to_numpy(), train["fold"].to_numpy()
    tta = "winner_model_a_direct" in oof.columns
    direct = probabilities(oof, "_direct") if tta else probabilities(oof, "")
    features = probabilities(pl.read_parquet(results / "features" / "oof.parquet").sort("id"), "")
    post = score_options(direct, features, labels, folds)
    scores = {
        "head": config["model"]["head"],
        "swap_augmentation": config["train"]["swap_augmentation"],
        "rows": train.height,
        "folds": int(len(np.unique(folds))),
        "max_length": config["model"]["max_length"],
        "log_loss": post["none"],
        "log_loss_temperature": post["temperature"],
        "accuracy": accuracy(labels, direct),
        "log_loss_blend_temperature": post["features_blend+temperature"],
        "features_baseline": metrics["features_baseline"]["log_loss"],
        "class_prior": metrics["overall"]["prior_log_loss"],
        "train_seconds": metrics["run"]["train_seconds"],
        "runtime": metrics["run"]["runtime"],
    }
    if tta:
        averaged = probabilities(oof, "")
        post_tta = score_options(averaged, features, labels, folds)
        scores |= {
            "log_loss_tta": post_tta["none"],
            "log_loss_tta_temperature": post_tta["temperature"],
            "accuracy_tta": accuracy(labels, averaged),
            "log_loss_tta_blend_temperature": post_tta["features_blend+temperature"],
        }
    return scores


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}"


def render_options_table(scores: dict[str, dict]) -> str:
    first = next(iter(scores.values()))
    runtime = first["runtime"] or {}
    lines = [
        f"OOF log loss on {first['rows']} rows, {first['folds']} folds grouped by prompt, max_length "
        f"{first['max_length']}, on {runtime.get('device', '?')} (training {runtime.get('dtype', '?')}). "
        "Temperature and blend columns are cross-fitted; the blend (with the features baseline) is taken "
        "on the swap-TTA average where the run has one.",
        "",
        "| run | log loss | + temperature | + swap TTA | + swap TTA + temperature | + features blend + temperature "
        "| accuracy (TTA) | training time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in scores.items():
        blend = s.get("log_loss_tta_blend_temperature", s["log_loss_blend_temperature"])
        lines.append(
            f"| {name} | {_fmt(s['log_loss'])} | {_fmt(s['log_loss_temperature'])} | "
            f"{_fmt(s.get('log_loss_tta'))} | {_fmt(s.get('log_loss_tta_temperature'))} | {_fmt(blend)} | "
            f"{_fmt(s.get('accuracy_tta', s['accuracy']))} | {s['train_seconds'] / 60:.1f} min |"
        )
    lines.append(f"| features baseline | {_fmt(first['features_baseline'])} | | | | | | |")
    lines.append(f"| class prior | {_fmt(first['class_prior'])} | | | | | | |")
    return "\n".join(lines) + "\n"
