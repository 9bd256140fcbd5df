"""Offline inference with exported fold adapters: Kaggle's test.csv in, submission.csv out.

Copied as predict.py into the folder `export_kaggle` writes, next to the `arenapref` package
(installed as `arenapref-predict-export` otherwise). Nothing is downloaded. The chosen folds share
one base model and its layers below the adapters; every visible GPU predicts a shard of the rows.
With --soup they predict as one adapter, the mean of their weight changes, at the cost of one fold.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if (HERE / "arenapref").is_dir():  # predict.py in an export folder: nothing is installed, the package lies beside it
    sys.path.insert(0, str(HERE))

from arenapref.cli import command  # noqa: E402


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export-dir", type=Path, default=HERE, help="the exported folder (default: this file's)")
    parser.add_argument("--test", type=Path, default=Path("/kaggle/input/lmsys-chatbot-arena/test.csv"))
    parser.add_argument(
        "--base-model",
        type=Path,
        required=True,
        help="local directory of the base checkpoint the adapters were trained on",
    )
    parser.add_argument("--out", type=Path, default=Path("submission.csv"))
    parser.add_argument("--folds", help="which exported adapters: 0,2 or fold0,full (default: all)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the exported setting")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="inference arithmetic (auto: bf16 from compute capability 8.0, fp16 on a T4)",
    )
    parser.add_argument("--tokens-per-batch", type=int, help="padded tokens per batch")
    parser.add_argument("--max-length", type=int, help="tokens per conversation (default: as trained)")
    parser.add_argument(
        "--swap-tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also predict with A and B swapped and average (twice the time)",
    )
    parser.add_argument(
        "--soup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the chosen folds as one adapter, the mean of their weight changes: k folds at the cost of one "
        "(default: as exported; on with ensemble.adapters: soup, of every fold but the full fit)",
    )
    parser.add_argument("--workers", type=int, help="processes, one per GPU (default: every visible GPU)")
    parser.add_argument(
        "--time-budget",
        help="e.g. 8h: measure throughput first, then predict with as many folds (and swap TTA) as the estimate allows",
    )
    parser.add_argument("--shard", help=argparse.SUPPRESS)  # i/n: a worker started by the main process
    parser.add_argument("--shard-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    from arenapref.kaggle.offline_predict import (
        PredictOptions,
        parse_folds,
        parse_hours,
        predict_shard,
        write_predictions,
    )

    options = PredictOptions(
        folds=parse_folds(args.folds),
        device=args.device,
        precision=args.precision,
        tokens_per_batch=args.tokens_per_batch,
        max_length=args.max_length,
        swap_tta=args.swap_tta,
        workers=args.workers,
        time_budget_hours=parse_hours(args.time_budget),
        soup=args.soup,
    )
    if args.shard:
        index, count = (int(part) for part in args.shard.split("/"))
        predict_shard(args.export_dir, args.test, args.base_model, options, index, count, args.shard_out)
        return 0
    submission = write_predictions(args.export_dir, args.test, args.base_model, args.out, options)
    print(f"wrote {args.out}: {submission.height} rows")
    return 0


if __name__ == "__main__":
    main()
