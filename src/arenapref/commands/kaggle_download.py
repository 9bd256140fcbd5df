"""Download the competition files with the kaggle CLI and unpack train.csv, test.csv and
sample_submission.csv into a folder."""

import argparse
from pathlib import Path

from arenapref.cli import command
from arenapref.kaggle.client import download_competition


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path("data/kaggle"))
    args = parser.parse_args()
    for name, path in download_competition(args.out_dir).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    main()
