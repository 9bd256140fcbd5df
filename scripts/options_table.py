#!/usr/bin/env python
"""Measure the modelling options on one data set: train and score the classifier and the sft head,
each with and without swap augmentation (four pipeline runs, each in its own folder), then tabulate
OOF log loss with and without swap TTA and temperature scaling, next to the features baseline and
the class prior."""

import argparse
from pathlib import Path

from arenapref.cli import run_main
from arenapref.config import merged

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "classifier": {"model": {"head": "classifier"}, "train": {"swap_augmentation": False}},
    "classifier+swap": {"model": {"head": "classifier"}, "train": {"swap_augmentation": True}},
    "sft": {"model": {"head": "sft"}, "train": {"swap_augmentation": False}},
    "sft+swap": {"model": {"head": "sft"}, "train": {"swap_augmentation": True}},
}
DATA_KEYS = ("train", "test", "sample_submission")


def run_variant(name: str, config: dict, out_dir: Path, cores: str) -> Path:
    """One pipeline run up to metrics.json in out_dir/name; Snakemake skips what is already done."""
    from arenapref.workflow import run_workflow

    print(f"[{name}] the pipeline in {out_dir / name}", flush=True)
    done = run_workflow(out_dir / name, config, ["results/metrics.json"], cores=cores, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: variant {name} failed:\n{done.stderr[-3000:]}")
    return out_dir / name / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--configfile",
        nargs="+",
        type=Path,
        default=[ROOT / "config/config.yaml"],
        help="config files, later ones overriding earlier ones (as snakemake --configfile)",
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results/options")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--cores", default="all")
    args = parser.parse_args()

    import yaml

    from arenapref.config import validate_config
    from arenapref.evaluate.options import render_options_table, score_variant
    from arenapref.io import write_json_atomic, write_text_atomic

    base = merged({}, *(yaml.safe_load(p.read_text()) or {} for p in args.configfile))
    # Every run reads the same data and base checkpoint, wherever its folder is.
    base.setdefault("data", {})
    for key in DATA_KEYS:
        if key in base["data"]:
            base["data"][key] = str((ROOT / base["data"][key]).resolve())
    if not base.get("model", {}).get("checkpoint"):
        embedded = ROOT / "results/model/smollm2-135m-instruct"
        if not (embedded / "config.json").exists():
            from arenapref.workflow import run_workflow

            # built once; a rebuild would pull it from under running jobs
            run_workflow(ROOT, None, [str(embedded.relative_to(ROOT))], gpus=None)
        base.setdefault("model", {})["checkpoint"] = str(embedded)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    scores = {}
    for name in args.variants:
        config = validate_config(merged(base, VARIANTS[name]))
        results = run_variant(name, config, args.out_dir.resolve(), args.cores)
        scores[name] = score_variant(results, config)
    write_json_atomic(args.out_dir / "options.json", scores)
    table = render_options_table(scores)
    write_text_atomic(args.out_dir / "options.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    run_main(main)
