"""Write a self-contained folder (fold adapters, tokenizer, offline predict.py, dataset metadata)
for a Kaggle notebook submission."""

import argparse
import json
from pathlib import Path

from arenapref.cli import command
from arenapref.config import RunConfig, load_config_arg
from arenapref.evaluate.ensemble import Postprocessing
from arenapref.io import read_json
from arenapref.kaggle.export import export_for_kaggle


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapters", required=True, nargs="+", type=Path, help="results/folds/fold*/adapter")
    parser.add_argument("--checkpoint", required=True, type=Path, help="base checkpoint the adapters were trained on")
    parser.add_argument("--metrics", required=True, type=Path, help="results/metrics.json")
    parser.add_argument("--postprocessing", type=Path, help="results/postprocessing.json (blend weight, temperature)")
    parser.add_argument("--features-model", type=Path, help="results/features/model.json (for the blend)")
    parser.add_argument("--config", help="config as JSON (model, predict, device sections)")
    parser.add_argument(
        "--dataset-id",
        default="YOUR_KAGGLE_USERNAME/arenapref-adapters",
        help="owner/slug written to dataset-metadata.json",
    )
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument(
        "--kernel-dir",
        type=Path,
        help="also write the notebook folder here (kernel-metadata.json, "
        "run.py); it must lie outside --out-dir, which is uploaded as the dataset",
    )
    parser.add_argument("--kernel-id", default="YOUR_KAGGLE_USERNAME/arenapref-submission")
    parser.add_argument(
        "--base-model",
        default="YOUR_KAGGLE_USERNAME/meta-llama-3-1-8b-bnb-4bit",
        help="the base checkpoint as attached to the notebook: dataset, model handle or path",
    )
    parser.add_argument("--wheels-python", help="bundle wheels for this Python (the Kaggle image's, e.g. 3.11)")
    parser.add_argument("--time-budget", default="8h", help="the notebook's prediction time budget")
    parser.add_argument(
        "--soup",
        action="store_true",
        help="predict.py predicts with the folds' soup by default (ensemble.adapters: soup)",
    )
    args = parser.parse_args()

    from arenapref.kaggle.kernel import write_kernel_folder
    from arenapref.kaggle.offline_predict import parse_hours

    run = RunConfig.from_config(load_config_arg(args.config))
    metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
    postprocessing = Postprocessing(**read_json(args.postprocessing)) if args.postprocessing else None
    features_model = read_json(args.features_model) if args.features_model else None
    budget = parse_hours(args.time_budget)
    out = export_for_kaggle(
        args.out_dir,
        args.adapters,
        args.checkpoint,
        run,
        metrics,
        args.dataset_id,
        postprocessing,
        features_model,
        args.wheels_python,
        time_budget_hours=budget,
        soup=args.soup,
    )
    print(f"wrote {out}: {len(args.adapters)} adapters; run `python {out}/predict.py --help`")
    if args.kernel_dir:
        write_kernel_folder(
            args.kernel_dir,
            args.kernel_id,
            args.dataset_id,
            args.base_model,
            predict_args=["--time-budget", args.time_budget],
        )
        print(f"wrote {args.kernel_dir}: the notebook `make submit` pushes")
    return 0


if __name__ == "__main__":
    main()
