"""Submit to the notebook-only competition: upload the export folder as a Kaggle dataset (created, or a
new version), push the notebook that runs its predict.py (GPU on, internet off), wait for the run, then
submit that notebook version. The message names the model, the config hash and the OOF log loss; the
receipt records what was uploaded, pushed and submitted."""

import argparse
import json
import shlex
from pathlib import Path

from arenapref.cli import command
from arenapref.errors import KaggleError
from arenapref.io import write_json_atomic
from arenapref.kaggle.client import (
    COMPETITION,
    require_credentials,
    submission_message,
)
from arenapref.kaggle.kernel import check_kernel_folder
from arenapref.kaggle.notebook_submission import (
    check_export_folder,
    submit_via_kernel,
)


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--export-dir",
        type=Path,
        default=Path("results/kaggle_export"),
        help="the folder export_kaggle writes; uploaded as the dataset",
    )
    parser.add_argument(
        "--kernel-dir",
        type=Path,
        default=Path("results/kaggle_kernel"),
        help="kernel-metadata.json and run.py; kept outside the uploaded export",
    )
    parser.add_argument("--metrics", type=Path, default=Path("results/metrics.json"))
    parser.add_argument(
        "--receipt",
        type=Path,
        default=Path("results/kaggle/submission_receipt.json"),
        help="JSON record of what was uploaded, pushed and submitted",
    )
    parser.add_argument("--poll-seconds", type=float, default=30, help="between status checks")
    parser.add_argument(
        "--timeout-hours",
        type=float,
        default=9.5,
        help="how long to wait for the notebook's run (Kaggle stops it after 9 hours)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="stop after the push; the receipt has the command that submits the version later",
    )
    args = parser.parse_args()
    if args.poll_seconds < 0 or args.timeout_hours <= 0:
        raise KaggleError("--poll-seconds must be >= 0 and --timeout-hours > 0")
    # Everything that can be checked here is, before the first call to Kaggle.
    dataset_id = check_export_folder(args.export_dir)
    check_kernel_folder(args.kernel_dir, dataset_id)
    if not args.metrics.is_file():
        raise KaggleError(f"{args.metrics}: no metrics; run the pipeline first (it names the submission)")
    message = submission_message(json.loads(args.metrics.read_text(encoding="utf-8")))
    require_credentials()
    receipt = submit_via_kernel(
        args.export_dir,
        args.kernel_dir,
        message,
        poll_seconds=args.poll_seconds,
        timeout_seconds=args.timeout_hours * 3600,
        wait=not args.no_wait,
    )
    write_json_atomic(args.receipt, receipt)
    where = f"{receipt['kernel_id']} version {receipt['version']}"
    if receipt["submitted"]:
        print(f"submitted {where} to {COMPETITION}: {message}")
    else:
        print(f"pushed {where}; submit it once complete with: {shlex.join(receipt['submit_command'])}")
    return 0


if __name__ == "__main__":
    main()
