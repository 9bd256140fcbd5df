"""Parse train/test CSV files into parquet tables with folds, and write the data report."""

import argparse

from arenapref.cli import command
from arenapref.data.folds import MAX_TURN_ROWS, MIN_TURN_CHARS
from arenapref.data.preprocess import preprocess_test, preprocess_train, summarize
from arenapref.io import atomic_path, write_json_atomic


def _limit(text: str) -> int | None:
    """A whole number, or none (how Snakemake writes a null config value) for no limit."""
    return None if text.lower() in ("none", "null") else int(text)


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="train.csv in the Kaggle schema")
    parser.add_argument("--test", required=True, help="test.csv in the Kaggle schema")
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--max-turn-rows",
        type=_limit,
        default=MAX_TURN_ROWS,
        help="a prompt turn in more rows than this does not group them (folds.max_turn_rows; none: no limit)",
    )
    parser.add_argument(
        "--min-turn-chars",
        type=int,
        default=MIN_TURN_CHARS,
        help="nor does a turn shorter than this (folds.min_turn_chars)",
    )
    parser.add_argument("--out-train", required=True, help="parquet output for train rows with folds")
    parser.add_argument("--out-test", required=True, help="parquet output for test rows")
    parser.add_argument("--report", required=True, help="JSON data report (rows dropped and why)")
    args = parser.parse_args()

    train, train_report = preprocess_train(args.train, args.n_folds, args.seed, args.max_turn_rows, args.min_turn_chars)
    test, test_report = preprocess_test(args.test)
    for table, out in ((train, args.out_train), (test, args.out_test)):
        with atomic_path(out) as tmp:
            table.write_parquet(tmp)
    summary = summarize(train, args.max_turn_rows, args.min_turn_chars)
    report = {"train": train_report.as_dict(), "test": test_report.as_dict(), **summary}
    write_json_atomic(args.report, report)
    print(
        f"train: {train_report.rows_in} rows in, {train_report.rows_kept} kept, "
        f"dropped {dict(train_report.dropped) or 'none'}; test: {test_report.rows_kept} rows"
        + (f", dropped {dict(test_report.dropped)}" if test_report.dropped else "")
    )
    return 0


if __name__ == "__main__":
    main()
