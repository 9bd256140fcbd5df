"""The pseudo-label stage: a finished run's fold ensemble labels pairs that have no winner.

prepare  parse a CSV of pairs in test.csv's schema (id, prompt, response_a, response_b), with
         the test rows' rules, into a parquet table the folds predict (arenapref-predict-fold
         --fold full --test ... with each fold's adapter)
combine  average the folds' probabilities, apply the run's post-processing (blend, temperature,
         rules), and write a validated soft-label file (id, winner_model_a, winner_model_b,
         winner_tie): data.soft_labels for a later run that lists the pairs in data.extra_train
"""

import argparse
from pathlib import Path

from arenapref.cli import command


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    prepare = steps.add_parser("prepare", help="parse the pairs CSV")
    prepare.add_argument("--pairs", required=True, type=Path, help="pairs in test.csv's schema")
    prepare.add_argument("--out", required=True, type=Path, help="parquet of the parsed pairs")
    combine = steps.add_parser("combine", help="the folds' probabilities, post-processed, as soft labels")
    combine.add_argument("--pairs", required=True, type=Path, help="the parsed pairs (prepare's output)")
    combine.add_argument("--preds", required=True, nargs="+", type=Path, help="each fold's predictions of the pairs")
    combine.add_argument("--postprocessing", type=Path, help="the run's postprocessing.json")
    combine.add_argument("--features-model", type=Path, help="the run's features model (for a blend)")
    combine.add_argument("--out", required=True, type=Path, help="soft-label CSV to write")
    args = parser.parse_args()

    import polars as pl

    from arenapref import LABEL_COLUMNS
    from arenapref.data.preprocess import preprocess_test
    from arenapref.io import atomic_path, read_json

    if args.step == "prepare":
        pairs, report = preprocess_test(args.pairs)
        with atomic_path(args.out) as tmp:
            pairs.write_parquet(tmp)
        print(f"{args.pairs}: {report.rows_kept} pairs to label")
        return 0

    from arenapref.data.row_kinds import rule_kinds
    from arenapref.evaluate.ensemble import Postprocessing
    from arenapref.evaluate.features import predict_features_model
    from arenapref.evaluate.submission import average_folds, validate_submission, write_submission

    pairs = pl.read_parquet(args.pairs).sort("id")
    averaged = average_folds(args.preds)
    if not averaged["id"].equals(pairs["id"]):
        raise ValueError(f"the folds' predictions do not cover the ids of {args.pairs}")
    postprocessing = Postprocessing(**read_json(args.postprocessing)) if args.postprocessing else Postprocessing()
    features = None
    if postprocessing.features_blend_weight is not None:
        if args.features_model is None:
            parser.error("the post-processing blends with the features model: give --features-model")
        features = predict_features_model(read_json(args.features_model), pairs)
    probs = postprocessing.apply(averaged.select(LABEL_COLUMNS).to_numpy(), features, rule_kinds(pairs).to_numpy())
    soft = pl.DataFrame({"id": pairs["id"], **{c: probs[:, k] for k, c in enumerate(LABEL_COLUMNS)}})
    validate_submission(soft, pairs["id"].to_list())
    write_submission(soft, args.out)
    print(f"wrote {args.out}: {soft.height} pairs labelled by {len(args.preds)} folds")
    return 0


if __name__ == "__main__":
    main()
