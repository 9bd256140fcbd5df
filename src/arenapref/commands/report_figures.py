"""Figures and tables for the Snakemake report: reliability, confusion matrix, per-fold scores,
training curves, token lengths, the scores, the data report and the benchmark."""

import argparse
import json
from pathlib import Path

from arenapref.cli import command


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--oof", required=True, type=Path, help="results/oof.parquet")
    parser.add_argument("--data", required=True, type=Path, help="train parquet with folds")
    parser.add_argument("--features-oof", required=True, type=Path)
    parser.add_argument("--train-logs", required=True, nargs="+", type=Path)
    parser.add_argument("--data-report", required=True, type=Path)
    parser.add_argument("--benchmark", type=Path, help="benchmark markdown, when the benchmark has run")
    parser.add_argument("--max-length", required=True, type=int)
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args()

    import polars as pl

    from arenapref.evaluate import report

    metrics = json.loads(args.metrics.read_text())
    oof = pl.read_parquet(args.oof)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    report.reliability_plot(oof, out / "calibration.svg")
    report.confusion_plot(oof, out / "confusion.svg")
    report.per_fold_plot(metrics, pl.read_parquet(args.features_oof), pl.read_parquet(args.data), out / "per_fold.svg")
    report.training_curves_plot([json.loads(p.read_text()) for p in args.train_logs], out / "training_curves.svg")
    report.token_length_plot(oof, args.max_length, out / "token_lengths.svg")
    report.scores_table(metrics, out / "scores.html")
    report.data_table(json.loads(args.data_report.read_text()), out / "data.html")
    report.benchmark_table(args.benchmark, out / "benchmark.html")
    print(f"wrote the report's figures and tables to {out}")
    return 0


if __name__ == "__main__":
    main()
