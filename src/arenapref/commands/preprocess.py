"""Parse train/test CSV files into parquet tables with folds, and write the data report."""

import argparse

from arenapref.cli import command
from arenapref.io import atomic_path, write_json_atomic
from arenapref.preprocess import preprocess_test, preprocess_train, summarize


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="train.csv in the Kaggle schema")
    parser.add_argument("--test", required=True, help="test.csv in the Kaggle schema")
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out-train", required=True, help="parquet output for train rows with folds")
    parser.add_argument("--out-test", required=True, help="parquet output for test rows")
    parser.add_argument("--report", required=True, help="JSON data report (rows dropped and why)")
    args = parser.parse_args()

    train, train_report = preprocess_train(args.train, args.n_folds, args.seed)
    test, test_report = preprocess_test(args.test)
    for table, out in ((train, args.out_train), (test, args.out_test)):
        with atomic_path(out) as tmp:
            table.write_parquet(tmp)
    report = {"train": train_report.as_dict(), "test": test_report.as_dict(), **summarize(train)}
    write_json_atomic(args.report, report)
    print(
        f"train: {train_report.rows_in} rows in, {train_report.rows_kept} kept, "
        f"dropped {dict(train_report.dropped) or 'none'}; test: {test_report.rows_kept} rows"
    )
    return 0


if __name__ == "__main__":
    main()
