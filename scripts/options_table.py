#!/usr/bin/env python
"""Measure the modelling options on one data set: train and score the classifier and the sft head,
each with and without swap augmentation (four pipeline runs, each in its own folder), then tabulate
OOF log loss with and without swap TTA and temperature scaling, next to the features baseline and
the class prior."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from arenapref.cli import run_main

VARIANTS = {
    "classifier": {"model": {"head": "classifier"}, "train": {"swap_augmentation": False}},
    "classifier+swap": {"model": {"head": "classifier"}, "train": {"swap_augmentation": True}},
    "sft": {"model": {"head": "sft"}, "train": {"swap_augmentation": False}},
    "sft+swap": {"model": {"head": "sft"}, "train": {"swap_augmentation": True}},
}
DATA_KEYS = ("train", "test", "sample_submission")


def merged(base: dict, *overlays: dict) -> dict:
    out = json.loads(json.dumps(base))
    for overlay in overlays:
        for key, value in overlay.items():
            out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def run_variant(name: str, config: dict, out_dir: Path, cores: str) -> Path:
    """One pipeline run up to metrics.json in out_dir/name; Snakemake skips what is already done."""
    import yaml

    workdir = out_dir / name
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "results/metrics.json", "--cores", cores, "--resources", "gpu=1"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    print(f"[{name}] {' '.join(command)}", flush=True)
    subprocess.run(command, env=env, check=True)
    return workdir / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configfile", nargs="+", type=Path, default=[ROOT / "config/config.yaml"],
                        help="config files, later ones overriding earlier ones (as snakemake --configfile)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results/options")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--cores", default="all")
    args = parser.parse_args()

    import yaml

    from arenapref.config import validate_config
    from arenapref.io import write_json_atomic, write_text_atomic
    from arenapref.options import render_options_table, score_variant

    base = merged({}, *(yaml.safe_load(p.read_text()) or {} for p in args.configfile))
    # Every run reads the same data and base checkpoint, wherever its folder is.
    base.setdefault("data", {})
    for key in DATA_KEYS:
        if key in base["data"]:
            base["data"][key] = str((ROOT / base["data"][key]).resolve())
    if not base.get("model", {}).get("checkpoint"):
        embedded = ROOT / "results/model/smollm2-135m-instruct"
        if not (embedded / "config.json").exists():  # built once; a rebuild would pull it from under running jobs
            subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT),
                            str(embedded.relative_to(ROOT)), "--cores", "1"], check=True)
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
