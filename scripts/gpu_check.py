#!/usr/bin/env python
"""The GPU check: a model of a known shape (Llama-3.1-8B by default; --shape gemma-2-9b, qwen2.5-7b,
mistral-7b) with random weights in nf4 trains at 4 x 2048
tokens with and without gradient checkpointing (bf16, and fp16 with the gradient scaler), peak
memory against the planner's and real tokens/s; predicts at the configured tokens per batch;
then the Snakemake pipeline runs on the GPU with a tiny random Llama. No network; about 5 minutes
on one GPU. Writes gpu_check.json and gpu_check.md to --out-dir."""

import argparse
import json
from pathlib import Path

from arenapref.cli import run_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--configfile",
        type=Path,
        default=Path("config/gpu-llama3-8b.yaml"),
        help="LoRA, batch and inference settings to check",
    )
    parser.add_argument(
        "--shape",
        default="llama-3.1-8b",
        help="an architecture the planner knows (llama-3.1-8b, gemma-2-9b, qwen2.5-7b, mistral-7b), "
        "or tiny (what the tests run)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--quantization", choices=["nf4", "int8", "none"], help="default: nf4 on CUDA, none on a CPU")
    parser.add_argument("--rows", type=int, default=4, help="training rows a step")
    parser.add_argument("--length", type=int, default=2048, help="tokens a training row")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps a case")
    parser.add_argument("--predict-batches", type=int, default=3, help="timed inference batches")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the Snakemake run")
    parser.add_argument("--out-dir", type=Path, default=Path("results/gpu-check"))
    args = parser.parse_args()

    import yaml

    from arenapref.bench.gpu_check import run_gpu_check
    from arenapref.bench.gpu_common import named_shape, settings_for
    from arenapref.bench.report import check_table
    from arenapref.config import RunConfig, validate_config
    from arenapref.io import atomic_path, write_json_atomic
    from arenapref.model.modeling import request_deterministic_cublas, resolve_device

    run = RunConfig.from_config(validate_config(yaml.safe_load(args.configfile.read_text()) or {}))
    request_deterministic_cublas(run.train.deterministic)  # as the pipeline's jobs do, before CUDA work
    device = resolve_device(args.device)
    run = settings_for(run, args.quantization or ("nf4" if device.type == "cuda" else "none"))
    shape = named_shape(args.shape)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = run_gpu_check(
        run,
        shape,
        device,
        args.rows,
        args.length,
        args.steps,
        args.predict_batches,
        pipeline=not args.no_pipeline,
        work_dir=args.out_dir,
    )
    report["shape"] = args.shape
    table = check_table(report)
    write_json_atomic(args.out_dir / "gpu_check.json", report)
    with atomic_path(args.out_dir / "gpu_check.md") as tmp:
        tmp.write_text(table + "\n")
    print(table)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
