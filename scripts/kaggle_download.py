#!/usr/bin/env python
"""Download the competition files with the kaggle CLI and unpack train.csv, test.csv and
sample_submission.csv into a folder."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from arenapref.cli import run_main  # noqa: E402
from arenapref.kaggle import download_competition  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path("data/kaggle"))
    args = parser.parse_args()
    for name, path in download_competition(args.out_dir).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
