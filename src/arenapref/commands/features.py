"""The features baseline: text statistics + logistic regression. Writes its out-of-fold probabilities
(fitted per fold, like the model), its test probabilities (fitted on every training row) and the
fitted model as JSON (for blending at Kaggle)."""

import argparse
from pathlib import Path

from arenapref.cli import command


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="train parquet with folds")
    parser.add_argument("--test", required=True, type=Path, help="test parquet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-oof", required=True, type=Path)
    parser.add_argument("--out-test", required=True, type=Path)
    parser.add_argument("--out-model", required=True, type=Path)
    args = parser.parse_args()

    import polars as pl

    from arenapref import LABEL_COLUMNS
    from arenapref.evaluate.features import features_oof, fit_features_model, predict_features_model
    from arenapref.evaluate.metrics import log_loss
    from arenapref.io import atomic_path, write_json_atomic

    train = pl.read_parquet(args.data).sort("id")
    test = pl.read_parquet(args.test).sort("id")
    oof = features_oof(train, args.seed)
    model = fit_features_model(train, args.seed)
    test_probs = predict_features_model(model, test)
    for table, probs, out in ((train, oof, args.out_oof), (test, test_probs, args.out_test)):
        frame = pl.DataFrame({"id": table["id"], **{c: probs[:, k] for k, c in enumerate(LABEL_COLUMNS)}})
        with atomic_path(out) as tmp:
            frame.write_parquet(tmp)
    write_json_atomic(args.out_model, model)
    print(
        f"features baseline: OOF log loss {log_loss(train['label'].to_numpy(), oof):.4f} on {train.height} rows; "
        f"{test.height} test rows predicted"
    )
    return 0


if __name__ == "__main__":
    main()
