#!/usr/bin/env python
"""The fold soup against the fold average and the full fit, on held-back real rows.

Holds back --holdout rows of the real train.csv as a test set (whole prompt groups, seeded), runs
the pipeline on the others (3 folds and the full fit, ensemble.adapters: soup, config/config.yaml
with config/real-rows-cpu.yaml over it), then scores the held-back rows' test predictions of (a)
the soup, (b) the mean of the folds' predictions and (c) the full fit: log loss, and the paired
per-row differences (mean and standard error). Raw probabilities, swap TTA as configured, no
temperature. Writes OUT_DIR/soup.json and OUT_DIR/soup.md (default results/soup_experiment/);
a rerun reuses what the pipeline already made.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from arenapref.cli import run_main

ROOT = Path(__file__).resolve().parents[1]
TEST_COLUMNS = ("id", "prompt", "response_a", "response_b")


def paired(losses: dict[str, np.ndarray], first: str, second: str) -> dict:
    from arenapref.evaluate.metrics import paired_difference

    mean, error = paired_difference(losses[first], losses[second])
    return {"pair": f"{first} - {second}", "mean": mean, "standard_error": error}


def render(result: dict) -> str:
    lines = [
        f"Held-back test rows: {result['test_rows']} (whole prompt groups, seed {result['seed']}); "
        f"trained on {result['train_rows']} rows, {result['folds']} folds and the full fit.",
        "",
        "| predictions | test log loss | accuracy |",
        "| --- | ---: | ---: |",
    ]
    for name, row in result["scores"].items():
        lines.append(f"| {name} | {row['log_loss']:.4f} | {row['accuracy']:.4f} |")
    lines += ["", "| paired difference (per-row log loss) | mean | standard error | within 2 SE of 0 |"]
    lines.append("| --- | ---: | ---: | --- |")
    for row in result["paired"]:
        noise = "yes" if abs(row["mean"]) <= 2 * row["standard_error"] else "no"
        lines.append(f"| {row['pair']} | {row['mean']:+.4f} | {row['standard_error']:.4f} | {noise} |")
    if "agreement" in result:
        agreement = result["agreement"]
        lines += [
            "",
            "Mean absolute difference of the probabilities from the mean of the folds': the soup's "
            f"{agreement['soup_to_mean_of_folds']:.4f}, a single fold's {agreement['fold_to_mean_of_folds']:.4f} "
            f"(averaged over folds), the full fit's {agreement['full_fit_to_mean_of_folds']:.4f}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, default=ROOT.parent / "shared/data/real/train.csv")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results/soup_experiment")
    parser.add_argument("--holdout", type=int, default=300, help="rows held back as the test set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", default="all")
    parser.add_argument("--overrides", default="{}", help="JSON config over the two config files")
    args = parser.parse_args()

    import polars as pl
    import yaml

    from arenapref import LABEL_COLUMNS
    from arenapref.config import merged, validate_config
    from arenapref.data.folds import whole_groups
    from arenapref.evaluate.metrics import accuracy, class_prior, row_log_losses
    from arenapref.io import write_json_atomic, write_text_atomic, write_text_if_changed
    from arenapref.workflow import run_workflow

    out = args.out_dir.resolve()
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    frame = pl.read_csv(args.train, infer_schema_length=0)  # every field as text: ids and JSON kept as written
    held = whole_groups([json.loads(text) for text in frame["prompt"].to_list()], args.holdout, args.seed)
    train, test = frame.filter(~pl.Series(held)), frame.filter(pl.Series(held))
    # Rewritten only when they change: a rerun then reuses the pipeline's folds and predictions.
    write_text_if_changed(data / "train.csv", train.write_csv())
    write_text_if_changed(data / "test.csv", test.select(TEST_COLUMNS).write_csv())
    uniform = pl.DataFrame({"id": test["id"], **{c: [1 / 3] * test.height for c in LABEL_COLUMNS}})
    write_text_if_changed(data / "sample_submission.csv", uniform.write_csv())

    checkpoint = ROOT / "results/model/smollm2-135m-instruct"
    if not (checkpoint / "config.json").exists():
        run_workflow(ROOT, None, [str(checkpoint.relative_to(ROOT))], gpus=None)
    configs = [
        yaml.safe_load((ROOT / name).read_text()) for name in ("config/config.yaml", "config/real-rows-cpu.yaml")
    ]
    config = merged(
        *configs,
        {
            "data": {key: str(data / f"{key}.csv") for key in ("train", "test", "sample_submission")},
            "folds": {"full_fit": True},
            "model": {"checkpoint": str(checkpoint)},
            "ensemble": {"adapters": "soup"},
        },
        json.loads(args.overrides),
    )
    config = validate_config(config)
    folds = [f"fold{k}" for k in range(config["folds"]["n"])]
    targets = [f"results/folds/{name}/test.parquet" for name in (*folds, "full", "soup")]
    done = run_workflow(out / "run", config, targets, cores=args.cores, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: the pipeline failed:\n{done.stderr[-3000:]}")

    def probabilities(name: str) -> pl.DataFrame:
        return pl.read_parquet(out / "run/results/folds" / name / "test.parquet").select("id", *LABEL_COLUMNS)

    labels_of = {
        row["id"]: int(np.argmax([float(row[c]) for c in LABEL_COLUMNS])) for row in test.iter_rows(named=True)
    }
    soup = probabilities("soup").sort("id")
    ids = soup["id"].to_list()
    labels = np.array([labels_of[str(i)] for i in ids])
    fold_probs = [probabilities(name).sort("id") for name in folds]
    assert all(fold["id"].to_list() == ids for fold in fold_probs)
    mean = np.mean([frame.select(LABEL_COLUMNS).to_numpy() for frame in fold_probs], axis=0)
    predictions = {
        "soup": soup.select(LABEL_COLUMNS).to_numpy(),
        "mean of folds": mean / mean.sum(axis=1, keepdims=True),
        "full fit": probabilities("full").sort("id").select(LABEL_COLUMNS).to_numpy(),
    }
    for name, frame in zip(folds, fold_probs, strict=True):  # each fold alone, for the ensemble's gain
        predictions[f"{name} alone"] = frame.select(LABEL_COLUMNS).to_numpy()
    train_labels = [int(np.argmax([float(row[c]) for c in LABEL_COLUMNS])) for row in train.iter_rows(named=True)]
    predictions["class prior (train rows)"] = np.tile(class_prior(train_labels), (len(ids), 1))
    losses = {name: row_log_losses(labels, probs) for name, probs in predictions.items()}
    result = {
        "train_rows": train.height,
        "test_rows": len(ids),
        "seed": args.seed,
        "folds": len(folds),
        "config": config,
        "scores": {
            name: {"log_loss": float(losses[name].mean()), "accuracy": float(accuracy(labels, predictions[name]))}
            for name in predictions
        },
        # How far the soup's probabilities are from the folds' mean, beside how far each fold is from
        # it: a soup that merely picked one fold's function would sit as far as a fold does.
        "agreement": {
            "soup_to_mean_of_folds": float(np.abs(predictions["soup"] - predictions["mean of folds"]).mean()),
            "fold_to_mean_of_folds": float(
                np.mean([np.abs(f.select(LABEL_COLUMNS).to_numpy() - mean).mean() for f in fold_probs])
            ),
            "full_fit_to_mean_of_folds": float(np.abs(predictions["full fit"] - predictions["mean of folds"]).mean()),
        },
        "paired": [
            paired(losses, "soup", "mean of folds"),
            paired(losses, "soup", "full fit"),
            paired(losses, "mean of folds", "full fit"),
        ],
    }
    write_json_atomic(out / "soup.json", result)
    table = render(result)
    write_text_atomic(out / "soup.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    run_main(main)
