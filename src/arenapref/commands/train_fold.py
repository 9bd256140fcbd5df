"""Train one fold's LoRA adapter on all rows outside the fold (resumable by chunk)."""

import argparse
from pathlib import Path

from arenapref.cli import command, fold_arg
from arenapref.config import RunConfig, load_config_arg
from arenapref.model.model_files import check_checkpoint_files


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="train parquet from preprocessing")
    parser.add_argument("--fold", required=True, type=fold_arg, help="fold to hold out, or full: every row")
    parser.add_argument("--checkpoint", required=True, type=Path, help="local Llama checkpoint directory")
    parser.add_argument("--config", help="model/train settings: inline JSON or a YAML/JSON file")
    parser.add_argument("--adapter-dir", required=True, type=Path, help="where to write the trained adapter")
    parser.add_argument("--log", required=True, type=Path, help="training log (JSON, with the loss curve)")
    parser.add_argument("--resume-dir", required=True, type=Path, help="per-chunk resume state")
    parser.add_argument("--extra", type=Path, help="extra training rows (preprocess's extra.parquet)")
    args = parser.parse_args()
    # Before torch and transformers load: a missing, empty or incomplete checkpoint is one line.
    check_checkpoint_files(args.checkpoint)

    from arenapref.train.job import train_fold

    run = RunConfig.from_config(load_config_arg(args.config))
    summary = train_fold(
        args.data, args.fold, args.checkpoint, run, args.adapter_dir, args.log, args.resume_dir, args.extra
    )
    print(
        f"fold {summary['fold']}: {summary['optimizer_steps']} steps in {summary['seconds']} s, "
        f"final loss {summary['final_loss']}"
    )
    return 0


if __name__ == "__main__":
    main()
