"""Write a seeded train.csv at the competition's scale (57,477 rows) with the real data's shape:
multi-turn share, generic turns, repeated prompts and label shares (docs/data-scale.md)."""

import argparse

from arenapref.cli import command
from arenapref.data.scale_data import COMPETITION_ROWS, fold_figures, write_scale_train
from arenapref.io import write_json_atomic


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="the train.csv to write (Kaggle schema)")
    parser.add_argument("--rows", type=int, default=COMPETITION_ROWS, help="rows in the file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--figures",
        help="also preprocess the file with the default fold settings and write the fold figures here (JSON)",
    )
    args = parser.parse_args()
    print(f"train: {write_scale_train(args.out, args.rows, args.seed)}")
    if args.figures:
        figures = fold_figures(args.out)
        write_json_atomic(args.figures, figures)
        print(
            f"{figures['rows']} rows kept, preprocessed in {figures['preprocess_seconds']} s; largest prompt group "
            f"{figures['largest_group']} rows ({figures['largest_group_share']:.2%}), without the turn rule "
            f"{figures['largest_group_without_rule']} ({figures['largest_group_without_rule_share']:.2%}); "
            f"fold sizes spread {figures['fold_rows_spread']:.2%}, label shares spread "
            f"{figures['fold_label_share_spread']:.2%} points; {figures['grouping']['turns_left_out']} turns "
            f"left out of grouping: {args.figures}"
        )
    return 0


if __name__ == "__main__":
    main()
