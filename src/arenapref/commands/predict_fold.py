"""Predict a fold's validation rows (out-of-fold) and all test rows with the fold's adapter; the full
fit and the fold soup have no validation rows and predict the test rows only."""

import argparse
import json
from pathlib import Path

from arenapref.cli import command, fold_arg
from arenapref.config import RunConfig, load_config_arg
from arenapref.model.model_files import check_checkpoint_files


def fold_or_soup(text: str) -> int | str | None:
    """A fold number, full (None) or soup: the soup predicts as the full fit does, test rows only."""
    return "soup" if text == "soup" else fold_arg(text)


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="train parquet with folds")
    parser.add_argument("--test", required=True, type=Path, help="test parquet")
    parser.add_argument("--fold", required=True, type=fold_or_soup, help="a fold, or full or soup (test rows only)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="local Llama checkpoint directory")
    parser.add_argument("--adapter-dir", required=True, type=Path, help="the fold's trained adapter")
    parser.add_argument("--config", help="model/predict settings: inline JSON or a YAML/JSON file")
    parser.add_argument("--out-oof", type=Path, help="parquet of out-of-fold probabilities (not for full)")
    parser.add_argument("--out-test", required=True, type=Path, help="parquet of test probabilities")
    args = parser.parse_args()
    # Before torch and transformers load: a missing, empty or incomplete checkpoint is one line.
    check_checkpoint_files(args.checkpoint)

    from arenapref.evaluate.job import predict_fold

    run = RunConfig.from_config(load_config_arg(args.config))
    soup = args.fold == "soup"
    summary = predict_fold(
        args.data,
        args.test,
        None if soup else args.fold,
        args.checkpoint,
        args.adapter_dir,
        run,
        args.out_oof,
        args.out_test,
    )
    if soup:
        summary["fold"] = "soup"
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    main()
