"""Write a seeded sample of train.csv, test.csv and sample_submission.csv in the Kaggle schema."""

import argparse

from arenapref.cli import command
from arenapref.data.sample_data import write_sample


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", required=True, help="folder for the three CSV files")
    parser.add_argument("--n-train", type=int, default=500, help="rows in train.csv, defects included")
    parser.add_argument("--n-test", type=int, default=100, help="rows in test.csv")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_sample(args.out_dir, args.n_train, args.n_test, args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    main()
