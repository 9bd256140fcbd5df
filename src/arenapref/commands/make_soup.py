"""Make the fold soup: the folds' LoRA adapters as one adapter whose weight change is the mean of
theirs (LoRA matrices stacked, classification layers averaged), so that k folds predict at the
cost of one."""

import argparse
import json
from pathlib import Path

from arenapref.cli import command


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapters", required=True, nargs="+", type=Path, help="results/folds/fold*/adapter")
    parser.add_argument("--out", required=True, type=Path, help="the soup's adapter folder to write")
    args = parser.parse_args()

    from arenapref.evaluate.soup import make_soup

    record = make_soup(args.adapters, args.out)
    print(json.dumps({"out": str(args.out), **record}))
    return 0


if __name__ == "__main__":
    main()
