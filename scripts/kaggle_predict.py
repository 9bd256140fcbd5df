#!/usr/bin/env python
"""Offline inference with exported fold adapters: Kaggle's test.csv in, submission.csv out.

Copied as predict.py into the folder `export_kaggle` writes, next to the `arenapref` package;
in the repository it finds the package under src/. Nothing is downloaded.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]  # export folder, or the repository

from arenapref.cli import run_main  # noqa: E402
from arenapref.export import predict_with_export  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export-dir", type=Path, default=HERE, help="the exported folder (default: this one)")
    parser.add_argument("--test", type=Path, default=Path("/kaggle/input/lmsys-chatbot-arena/test.csv"))
    parser.add_argument("--base-model", type=Path, required=True,
                        help="local directory of the base checkpoint the adapters were trained on")
    parser.add_argument("--out", type=Path, default=Path("submission.csv"))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                        help="override the exported setting")
    args = parser.parse_args()
    submission = predict_with_export(args.export_dir, args.test, args.base_model, args.out, args.device)
    print(f"wrote {args.out}: {submission.height} rows")
    return 0


if __name__ == "__main__":
    run_main(main)
