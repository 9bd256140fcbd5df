#!/usr/bin/env python
"""The GPU benchmark: ours against the tuned Trainer and the original notebook's Trainer, training
and inference, with a model of a known shape (Llama-3.1-8B by default) with random weights, in nf4
and in bf16, on the token lengths of real rows. Needs what `make gpu-check` needs (torch,
transformers, peft, bitsandbytes, jsonschema), not polars or snakemake; about 5 minutes a format on
one large GPU. Writes gpu_benchmark.json and gpu_benchmark.md to --out-dir."""

import argparse
import dataclasses
from pathlib import Path

from arenapref.cli import run_main

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_MODEL = ROOT / "results/model/smollm2-135m-instruct"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configfile", type=Path, default=ROOT / "config/gpu-llama3-8b.yaml")
    parser.add_argument("--shape", default="llama-3.1-8b", help="a shape the planner knows, or tiny (the tests)")
    parser.add_argument("--train", type=Path, default=ROOT.parent / "shared/data/real/train.csv")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        help="a local tokenizer folder (default: the config's checkpoint when it is here, else the embedded model's)",
    )
    parser.add_argument(
        "--formats", default=None, help="weight formats, comma-separated (default: nf4,none on CUDA, none on a CPU)"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--max-length", type=int, help="tokens a row (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="a few rows and steps: checks the figures are produced")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results/gpu-benchmark")
    args = parser.parse_args()

    import yaml

    from arenapref.bench.gpu_benchmark import run_gpu_benchmark
    from arenapref.bench.gpu_common import named_shape
    from arenapref.bench.report import render_gpu_benchmark
    from arenapref.config import RunConfig, validate_config
    from arenapref.errors import CheckpointError, ConfigError, DataError
    from arenapref.io import write_json_atomic, write_text_atomic
    from arenapref.model.modeling import resolve_device

    shape = named_shape(args.shape)
    if not args.train.is_file():
        raise DataError(args.train, "no such file (pass --train with a train.csv in the competition's schema)")
    config = validate_config(yaml.safe_load(args.configfile.read_text()) or {})
    run = RunConfig.from_config(config)
    model = run.model if args.max_length is None else dataclasses.replace(run.model, max_length=args.max_length)
    run = dataclasses.replace(run, model=model, device=args.device)
    tokenizer = args.tokenizer
    if tokenizer is None:
        configured = ROOT / run.model.checkpoint if run.model.checkpoint else None
        tokenizer = configured if configured and (configured / "tokenizer_config.json").is_file() else EMBEDDED_MODEL
    if not (tokenizer / "tokenizer_config.json").is_file():
        raise CheckpointError(
            f"no tokenizer in {tokenizer}: pass --tokenizer with a local model folder, or make the embedded "
            "model's with `.venv/bin/snakemake results/model/smollm2-135m-instruct --cores 1`"
        )
    on_cuda = resolve_device(args.device).type == "cuda"
    formats = (args.formats or ("nf4,none" if on_cuda else "none")).split(",")
    unknown = sorted(set(formats) - {"nf4", "int8", "none"})
    if unknown:
        raise ConfigError(f"unknown --formats {', '.join(unknown)}; known: nf4, int8, none (the compute precision)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = run_gpu_benchmark(run, shape, tokenizer, args.train, formats, args.quick, work_dir=args.out_dir)
    report["shape_name"] = args.shape
    table = render_gpu_benchmark(report)
    write_json_atomic(args.out_dir / "gpu_benchmark.json", report)
    write_text_atomic(args.out_dir / "gpu_benchmark.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    run_main(main)
