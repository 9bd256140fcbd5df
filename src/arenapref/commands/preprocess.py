"""Parse train/test CSV files (and extra training files) into parquet tables with folds, and write the data report."""

import argparse
from collections import Counter

from arenapref.cli import command
from arenapref.data.extra import join_extra, read_extra_file
from arenapref.data.folds import MAX_TURN_ROWS, MIN_TURN_CHARS
from arenapref.data.preprocess import preprocess_test, preprocess_train, summarize
from arenapref.data.row_kinds import rule_kinds, rule_rows
from arenapref.data.soft_labels import attach_soft_labels, read_soft_labels, soft_label_summary
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
    parser.add_argument(
        "--extra",
        nargs="*",
        default=[],
        help="extra training files (data.extra_train): Kaggle-schema .csv, or conversations-schema .jsonl/.parquet",
    )
    parser.add_argument("--out-extra", help="parquet output for the extra rows that may train (with --extra)")
    parser.add_argument(
        "--soft-labels", help="a teacher's probabilities for training rows (data.soft_labels): id and three columns"
    )
    parser.add_argument("--out-train", required=True, help="parquet output for train rows with folds")
    parser.add_argument("--out-test", required=True, help="parquet output for test rows")
    parser.add_argument("--report", required=True, help="JSON data report (rows dropped and why)")
    parser.add_argument(
        "--out-rule-rows",
        help="parquet of the training rows the model cannot judge (identical or empty responses), kept or dropped",
    )
    args = parser.parse_args()

    train, train_report = preprocess_train(args.train, args.n_folds, args.seed, args.max_turn_rows, args.min_turn_chars)
    test, test_report = preprocess_test(args.test)
    soft = read_soft_labels(args.soft_labels) if args.soft_labels else None
    if args.extra and not args.out_extra:
        parser.error("--extra needs --out-extra")
    extras = [read_extra_file(path) for path in args.extra]
    extra, extra_summary = join_extra(train, extras, args.max_turn_rows, args.min_turn_chars, soft)
    if soft is not None:
        train = attach_soft_labels(train, soft)
    outputs = [(train, args.out_train), (test, args.out_test)]
    judged_by_rule = rule_rows(train, train_report.dropped_rows)
    if args.out_rule_rows:
        outputs.append((judged_by_rule, args.out_rule_rows))
    if args.out_extra:
        outputs.append((extra, args.out_extra))
    for table, out in outputs:
        with atomic_path(out) as tmp:
            table.write_parquet(tmp)
    summary = summarize(train, args.max_turn_rows, args.min_turn_chars)
    report = {"train": train_report.as_dict(), "test": test_report.as_dict(), **summary}
    report["rows_judged_by_rule"] = {
        "train": dict(sorted(Counter(judged_by_rule["rule"].to_list()).items())),
        "test": dict(sorted(Counter(rule_kinds(test).drop_nulls().to_list()).items())),
    }
    if args.out_extra:
        report["extra"] = extra_summary
    if soft is not None:
        report["soft_labels"] = soft_label_summary(soft, train, extra)
    write_json_atomic(args.report, report)
    print(
        f"train: {train_report.rows_in} rows in, {train_report.rows_kept} kept, "
        f"dropped {dict(train_report.dropped) or 'none'}; test: {test_report.rows_kept} rows"
        + (f", dropped {dict(test_report.dropped)}" if test_report.dropped else "")
    )
    if args.extra:
        print(
            f"extra: {extra_summary['rows']} rows may train ({extra_summary['duplicates_of_main']} repeated a main "
            f"row); per fold {extra_summary['rows_per_fold']}"
        )
    return 0


if __name__ == "__main__":
    main()
