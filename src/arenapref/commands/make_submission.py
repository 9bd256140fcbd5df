"""Average the folds' test predictions, apply the OOF-fitted post-processing (blend with the features
baseline, temperature, the rules for rows the model cannot judge) and write a validated submission.csv."""

import argparse
from pathlib import Path

from arenapref.cli import command
from arenapref.evaluate.ensemble import Postprocessing
from arenapref.evaluate.submission import build_submission, write_submission
from arenapref.io import read_json


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--test-preds", required=True, nargs="+", type=Path, help="per-fold test parquet files")
    parser.add_argument("--sample-submission", required=True, type=Path, help="Kaggle sample_submission.csv")
    parser.add_argument("--postprocessing", type=Path, help="JSON written by evaluate (blend weight, temperature)")
    parser.add_argument("--features-test", type=Path, help="the features baseline's test parquet (for the blend)")
    parser.add_argument("--test-data", type=Path, help="the preprocessed test parquet (for the rules' rows)")
    parser.add_argument("--out", required=True, type=Path, help="submission.csv to write")
    args = parser.parse_args()
    postprocessing = Postprocessing(**read_json(args.postprocessing)) if args.postprocessing else None
    submission = build_submission(
        args.test_preds, args.sample_submission, postprocessing, args.features_test, args.test_data
    )
    write_submission(submission, args.out)
    print(
        f"wrote {args.out}: {submission.height} rows from {', '.join(p.parent.name for p in args.test_preds)}; "
        "post-processing "
        f"{postprocessing.as_dict() if postprocessing else 'none'}"
    )
    return 0


if __name__ == "__main__":
    main()
