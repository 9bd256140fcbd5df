"""Score the out-of-fold predictions: log loss and accuracy per fold and overall, against the class prior."""

import argparse
import json
from pathlib import Path

from arenapref.cli import command


def _one_value(logs: list[dict], key: str):
    values = {log.get(key) for log in logs}
    if len(values) > 1:
        raise ValueError(f"the folds' training logs disagree on {key}: {sorted(map(str, values))}")
    return values.pop() if values else None


def _why(ranked: list[tuple[float, str]], settings: dict) -> str:
    """One sentence on the choice: the settings that fixed it, or the scores that decided it."""
    automatic = [name for name, value in settings.items() if value == "auto"]
    fixed = ", ".join(f"{name}: {str(value).lower()}" for name, value in settings.items() if value != "auto")
    if not automatic:
        return f"set by the config ({fixed})"
    score, chosen = ranked[0]
    others = "; ".join(f"{name} {value:.4f}" for value, name in ranked[1:4])
    return (
        f"the lowest cross-fitted out-of-fold log loss ({score:.4f}) of the {len(ranked)} combinations that "
        f"{', '.join(automatic)}: auto"
        + (f" and {fixed}" if fixed else "")
        + " allow"
        + (f"; next: {others}" if others else "")
    )


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="train parquet with folds")
    parser.add_argument("--oof", required=True, nargs="+", type=Path, help="per-fold OOF parquet files")
    parser.add_argument("--features-oof", required=True, type=Path, help="the features baseline's OOF parquet")
    parser.add_argument("--train-logs", nargs="*", type=Path, default=[], help="per-fold training logs")
    parser.add_argument(
        "--rule-rows", type=Path, help="training rows the model cannot judge (preprocess's rule_rows.parquet)"
    )
    parser.add_argument("--config", help="the run configuration (inline JSON or file), recorded in the metrics")
    parser.add_argument("--out-oof", required=True, type=Path, help="all OOF predictions in one parquet")
    parser.add_argument("--out-metrics", required=True, type=Path, help="metrics JSON")
    parser.add_argument(
        "--out-postprocessing",
        required=True,
        type=Path,
        help="JSON: the blend weight and temperature the submission applies (fitted on OOF)",
    )
    args = parser.parse_args()

    import polars as pl

    from arenapref.config import load_config_arg
    from arenapref.evaluate.ensemble import Postprocessing, option_settings, ranked_options
    from arenapref.evaluate.evaluation import gather_oof, probabilities, reference_scores, score_oof
    from arenapref.io import atomic_path, file_sha256, stable_hash, write_json_atomic

    train = pl.read_parquet(args.data)
    oof = gather_oof(args.oof, train)
    metrics = score_oof(oof, train)
    features = pl.read_parquet(args.features_oof).sort("id")
    if not features["id"].equals(train["id"].sort()):
        raise ValueError(f"{args.features_oof} does not hold the same ids as {args.data}")
    feature_probs = probabilities(features)
    rule_rows = pl.read_parquet(args.rule_rows) if args.rule_rows else None
    metrics.update(reference_scores(oof, train, feature_probs, rule_rows))
    config = load_config_arg(args.config)
    settings = config["ensemble"]
    rules_setting = settings["rules"] if rule_rows is not None else False
    scores = metrics["postprocessing_cross_fitted"]
    choices = {
        "features_blend": settings["features_blend"],
        "temperature_scaling": settings["temperature_scaling"],
        "rules": rules_setting,
    }
    ranked = ranked_options(scores, *choices.values())
    option = ranked[0][1]
    blend_on, temperature_on, rules_on = option_settings(option)
    postprocessing = Postprocessing.fit(
        probabilities(oof.sort("id")),
        feature_probs,
        train.sort("id")["label"].to_numpy(),
        blend_on,
        temperature_on,
        rule_rows if rules_on else None,
    )
    metrics["postprocessing"] = {
        **settings,
        "chosen": option,
        "why": _why(ranked, choices),
        **postprocessing.as_dict(),
    }
    logs = [json.loads(p.read_text()) for p in args.train_logs]
    metrics["run"] = {
        "config_hash": stable_hash(config),
        "seed": config["train"]["seed"],
        "folds": config["folds"],
        "model_checkpoint": logs[0]["checkpoint"] if logs else None,
        # Every fold must have trained on the same base weights; the checksum says which.
        "model_sha256": _one_value(logs, "checkpoint_sha256"),
        "adapter_sha256": {str(log["fold"]): log.get("adapter_sha256") for log in logs},
        "runtime": logs[0]["runtime"] if logs else None,
        "versions": logs[0]["versions"] if logs else None,
        "data_sha256": file_sha256(args.data),
        "train_seconds": sum(log["seconds"] for log in logs),
    }
    with atomic_path(args.out_oof) as tmp:
        oof.write_parquet(tmp)
    write_json_atomic(args.out_metrics, metrics)
    write_json_atomic(args.out_postprocessing, postprocessing.as_dict())
    overall = metrics["overall"]
    print(f"post-processing: {option} ({metrics['postprocessing']['why']})")
    print(
        f"OOF log loss {overall['log_loss']:.4f} (class prior {overall['prior_log_loss']:.4f}), "
        f"accuracy {overall['accuracy']:.3f} on {overall['rows']} rows; features baseline "
        f"{metrics['features_baseline']['log_loss']:.4f}; temperature "
        f"{metrics['temperature_scaling']['temperature']:.3f}"
    )
    return 0


if __name__ == "__main__":
    main()
