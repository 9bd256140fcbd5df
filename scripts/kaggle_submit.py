#!/usr/bin/env python
"""Validate submission.csv against sample_submission.csv and submit it with the kaggle CLI; the
message names the model, the config hash and the OOF log loss."""

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import polars as pl  # noqa: E402

from arenapref.cli import run_main  # noqa: E402
from arenapref.io import file_sha256, write_json_atomic  # noqa: E402
from arenapref.kaggle import COMPETITION, submission_message, submit  # noqa: E402
from arenapref.submission import sample_submission_ids, validate_submission  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--submission", type=Path, default=Path("results/submission.csv"))
    parser.add_argument("--sample-submission", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, default=Path("results/metrics.json"))
    parser.add_argument("--receipt", type=Path, required=True, help="JSON record of what was submitted")
    args = parser.parse_args()
    validate_submission(pl.read_csv(args.submission), sample_submission_ids(args.sample_submission))
    message = submission_message(json.loads(args.metrics.read_text(encoding="utf-8")))
    output = submit(args.submission, message)
    write_json_atomic(args.receipt, {
        "competition": COMPETITION,
        "file": str(args.submission),
        "sha256": file_sha256(args.submission),
        "message": message,
        "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kaggle_output": output,
    })
    print(f"submitted {args.submission} to {COMPETITION}: {message}")
    return 0


if __name__ == "__main__":
    run_main(main)
