#!/usr/bin/env python
"""Extra training rows, a teacher's probabilities, and the rules with `auto`, on the real rows.

Four measurements on the real train.csv (3 folds, the embedded SmolLM2-135M on a CPU, the settings
of config/config.yaml with config/real-rows-cpu.yaml over it and --overrides over both):

  (a) today's run: every row, winners only;
  (b) --extra-rows rows (whole prompt groups, seeded) given as data.extra_train, the others as the
      main rows: out-of-fold log loss on the main rows against (a)'s on the same rows;
  (c) (a)'s out-of-fold probabilities (each from a model that did not train on the row) as the
      teacher (data.soft_labels) at train.distill_weight --weight, against (a);
  (d) from (a)'s out-of-fold rows: the rules for rows the model cannot judge and the `auto`
      post-processing, cross-fitted, against the model's probabilities.

Each comparison is a paired difference of per-row log loss (mean and standard error). Writes
OUT_DIR/training_data.json and .md (default results/training_data_experiment/); a rerun reuses
what the pipeline runs already made. Run (a) first with --only a, then (b) and (c) side by side
with --only b and --only c when cores allow, then --only report.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from arenapref.cli import run_main

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("a", "b", "c")


def paired(first: np.ndarray, second: np.ndarray, what: str) -> dict:
    from arenapref.evaluate.metrics import paired_difference

    mean, error = paired_difference(first, second)
    return {"comparison": what, "rows": len(first), "mean": mean, "standard_error": error}


def oof_losses(run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Row ids and per-row log loss of a finished run's out-of-fold file, and its metrics."""
    import polars as pl

    from arenapref.evaluate.evaluation import probabilities
    from arenapref.evaluate.metrics import row_log_losses

    oof = pl.read_parquet(run_dir / "results" / "oof.parquet").sort("id")
    labels = pl.read_parquet(run_dir / "results" / "data" / "train.parquet").sort("id")["label"].to_numpy()
    metrics = json.loads((run_dir / "results" / "metrics.json").read_text())
    return oof["id"].to_numpy(), row_log_losses(labels, probabilities(oof)), metrics


def rules_and_auto(run_dir: Path) -> list[dict]:
    """(d): cross-fitted per-row log loss of the post-processing options on (a)'s OOF rows."""
    import polars as pl

    from arenapref.data.row_kinds import rule_kinds
    from arenapref.evaluate.ensemble import cross_fitted, option_settings
    from arenapref.evaluate.evaluation import probabilities
    from arenapref.evaluate.metrics import row_log_losses
    from arenapref.evaluate.row_rules import cross_fitted_rules

    results = run_dir / "results"
    train = pl.read_parquet(results / "data" / "train.parquet").sort("id")
    model = probabilities(pl.read_parquet(results / "oof.parquet").sort("id"))
    features = probabilities(pl.read_parquet(results / "features" / "oof.parquet").sort("id"))
    rule_rows = pl.read_parquet(results / "data" / "rule_rows.parquet")
    labels, folds, kinds = train["label"].to_numpy(), train["fold"].to_numpy(), rule_kinds(train).to_numpy()
    chosen = json.loads((results / "metrics.json").read_text())["postprocessing"]["chosen"]

    def per_row(name: str) -> np.ndarray:
        blend_on, temperature_on, rules_on = option_settings(name)
        probs = model
        if blend_on or temperature_on:
            probs = cross_fitted(model, features, labels, folds, blend_on, temperature_on)
        if rules_on:
            probs = cross_fitted_rules(probs, kinds, folds, rule_rows)
        return row_log_losses(labels, probs)

    none = per_row("none")
    touched = np.asarray([kind is not None for kind in kinds])
    out = [paired(per_row("none+rules"), none, "rules - the model alone (every OOF row)")]
    if touched.any():
        out.append(
            paired(per_row("none+rules")[touched], none[touched], "rules - the model alone (the rows a rule judges)")
        )
    out.append(paired(per_row("temperature"), none, "temperature - none"))
    out.append(paired(per_row(chosen), none, f"auto's choice ({chosen}) - none"))
    out.append(paired(per_row(chosen), per_row("temperature"), f"auto's choice ({chosen}) - temperature"))
    return out


def render(result: dict) -> str:
    lines = [
        f"{result['rows']} real rows, {result['settings']}.",
        "",
        "| run | OOF log loss (model alone) | rows |",
        "| --- | ---: | ---: |",
    ]
    for name, row in result["runs"].items():
        lines.append(f"| {name} | {row['log_loss']:.4f} | {row['rows']} |")
    lines += ["", "| paired difference of per-row log loss | rows | mean | standard error | beyond 2 SE |"]
    lines.append("| --- | ---: | ---: | ---: | --- |")
    for row in result["paired"]:
        beyond = "yes" if abs(row["mean"]) > 2 * row["standard_error"] else "no: within noise"
        lines.append(
            f"| {row['comparison']} | {row['rows']} | {row['mean']:+.4f} | {row['standard_error']:.4f} | {beyond} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=ROOT.parent / "shared/data/real/train.csv")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results/training_data_experiment")
    parser.add_argument("--extra-rows", type=int, default=400, help="rows given as extra data in (b)")
    parser.add_argument("--weight", type=float, default=0.5, help="train.distill_weight in (c)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", default="all")
    parser.add_argument("--overrides", default="{}", help="JSON config over the two config files")
    parser.add_argument("--only", choices=(*RUNS, "report"), help="one run, or only the report")
    args = parser.parse_args()

    import polars as pl
    import yaml

    from arenapref import LABEL_COLUMNS
    from arenapref.config import merged, validate_config
    from arenapref.data.folds import whole_groups
    from arenapref.io import write_json_atomic, write_text_atomic, write_text_if_changed
    from arenapref.workflow import run_workflow

    out = args.out_dir.resolve()
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    real = args.train.resolve().parent
    frame = pl.read_csv(args.train, infer_schema_length=0)
    extra_mask = whole_groups([json.loads(text) for text in frame["prompt"].to_list()], args.extra_rows, args.seed)
    # Rewritten only when they change: a rerun then reuses the pipeline's outputs.
    write_text_if_changed(data / "main.csv", frame.filter(~pl.Series(extra_mask)).write_csv())
    write_text_if_changed(data / "extra.csv", frame.filter(pl.Series(extra_mask)).write_csv())

    checkpoint = ROOT / "results/model/smollm2-135m-instruct"
    if not (checkpoint / "config.json").exists():
        run_workflow(ROOT, None, [str(checkpoint.relative_to(ROOT))], gpus=None)
    files = [yaml.safe_load((ROOT / name).read_text()) for name in ("config/config.yaml", "config/real-rows-cpu.yaml")]
    base = merged(
        *files,
        {
            "data": {
                "train": str(args.train.resolve()),
                "test": str(real / "test.csv"),
                "sample_submission": str(real / "sample_submission.csv"),
            },
            "model": {"checkpoint": str(checkpoint)},
        },
        json.loads(args.overrides),
    )
    configs = {
        "a": base,
        "b": merged(base, {"data": {"train": str(data / "main.csv"), "extra_train": [str(data / "extra.csv")]}}),
        "c": merged(
            base, {"data": {"soft_labels": str(data / "teacher.csv")}, "train": {"distill_weight": args.weight}}
        ),
    }

    def run(name: str) -> None:
        if name == "c":
            oof = pl.read_parquet(out / "a" / "results" / "oof.parquet").select("id", *LABEL_COLUMNS)
            write_text_if_changed(data / "teacher.csv", oof.write_csv(float_precision=8))
        done = run_workflow(
            out / name, validate_config(configs[name]), ["results/metrics.json"], args.cores, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"error: run ({name}) failed:\n{done.stderr[-3000:]}")

    for name in RUNS if args.only is None else (() if args.only == "report" else (args.only,)):
        run(name)
    if args.only not in (None, "report"):
        return 0

    ids_a, losses_a, metrics_a = oof_losses(out / "a")
    ids_b, losses_b, metrics_b = oof_losses(out / "b")
    ids_c, losses_c, metrics_c = oof_losses(out / "c")
    on_b = np.isin(ids_a, ids_b)
    assert np.array_equal(ids_a[on_b], ids_b) and np.array_equal(ids_a, ids_c)
    settings = validate_config(base)
    result = {
        "rows": int(len(ids_a)),
        "settings": (
            f"{settings['folds']['n']} folds, max_length {settings['model']['max_length']}, "
            f"{settings['train']['epochs']} epoch(s), swap TTA {'on' if settings['predict']['swap_tta'] else 'off'}, "
            f"seed {args.seed}; (b) {int(extra_mask.sum())} rows as extra data, (c) distill_weight {args.weight}"
        ),
        "runs": {
            "(a) today's run": {"log_loss": float(losses_a.mean()), "rows": int(len(ids_a))},
            "(a) on (b)'s main rows": {"log_loss": float(losses_a[on_b].mean()), "rows": int(on_b.sum())},
            "(b) extra rows in the training folds": {"log_loss": float(losses_b.mean()), "rows": int(len(ids_b))},
            "(c) (a)'s OOF as the teacher": {"log_loss": float(losses_c.mean()), "rows": int(len(ids_c))},
        },
        "extra": json.loads((out / "b" / "results" / "data" / "report.json").read_text()).get("extra"),
        "postprocessing": {
            run: m["postprocessing"] for run, m in (("a", metrics_a), ("b", metrics_b), ("c", metrics_c))
        },
        "rules": metrics_a.get("rules"),
        "paired": [
            paired(losses_b, losses_a[on_b], "(b) - (a), on (b)'s main rows"),
            paired(losses_c, losses_a, "(c) - (a)"),
            *rules_and_auto(out / "a"),
        ],
    }
    write_json_atomic(out / "training_data.json", result)
    table = render(result)
    write_text_atomic(out / "training_data.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    run_main(main)
