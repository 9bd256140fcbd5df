#!/usr/bin/env python
"""Plan memory and time before training: the peak GPU memory of a training step and of an
inference batch, whether they fit a GPU, the settings that would, and the hours a fold takes.

Reads only the checkpoint's config.json (the model is built on the meta device). Without a GPU
named or detected, plans for the 16, 24, 40 and 80 GB classes."""

import argparse
from pathlib import Path

from arenapref.cli import run_main
from arenapref.config import merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--configfile",
        nargs="+",
        default=["config/gpu-llama3-8b.yaml"],
        help="config files, later ones override (as snakemake --configfile)",
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: model.checkpoint)")
    parser.add_argument(
        "--shape",
        help="a known architecture, used when the checkpoint is not downloaded yet "
        "(llama-3.1-8b, gemma-2-9b, qwen2.5-7b, mistral-7b)",
    )
    parser.add_argument(
        "--gpu",
        default="auto",
        help="16, 24, 40 or 80 (GB class), all, or auto: the GPU of this machine when there is one, else all classes",
    )
    parser.add_argument(
        "--tflops",
        type=float,
        help="dense matmul rate to plan time with (default: the class's "
        "data-sheet peak, or measured on the detected GPU)",
    )
    parser.add_argument("--rows", type=int, default=57_477, help="training rows (the competition's)")
    parser.add_argument("--test-rows", type=int, default=25_000, help="test rows to predict per fold")
    parser.add_argument("--mean-tokens", type=float, default=650.0, help="mean real tokens a row")
    parser.add_argument(
        "--kaggle-hours",
        action="store_true",
        help="instead: hours to predict --test-rows rows on "
        "Kaggle's 2 x T4 for 1, 3 and 5 folds, with and without swap TTA, at max_length 1024 and 2048",
    )
    parser.add_argument("--out-md", type=Path, help="also write the table here")
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args()

    import yaml

    from arenapref.config import RunConfig, validate_config
    from arenapref.errors import CheckpointError
    from arenapref.io import atomic_path, write_json_atomic
    from arenapref.model.modeling import checkpoint_quantization
    from arenapref.model.plan import KNOWN_SHAPES, ModelShape, Workload, plan_gpu, plan_table

    raw: dict = {}
    for path in args.configfile:
        raw = merged(raw, yaml.safe_load(Path(path).read_text()) or {})
    config = validate_config(raw)
    run = RunConfig.from_config(config)
    checkpoint = args.checkpoint or (Path(config["model"]["checkpoint"]) if config["model"]["checkpoint"] else None)
    saved_quantization = None
    if checkpoint is not None and (checkpoint / "config.json").is_file():
        shape, source = ModelShape.from_checkpoint(checkpoint, run), str(checkpoint)
        saved_quantization = checkpoint_quantization(checkpoint)
    elif args.shape:
        if args.shape not in KNOWN_SHAPES:
            raise CheckpointError(f"unknown --shape {args.shape!r}; known: {', '.join(KNOWN_SHAPES)}")
        shape, source = ModelShape.from_dict(KNOWN_SHAPES[args.shape], run), f"the {args.shape} architecture"
    else:
        raise CheckpointError(
            f"no checkpoint config at {checkpoint}/config.json: download the model (README, "
            "On a GPU) or plan for a known architecture with --shape llama-3.1-8b"
        )

    if args.kaggle_hours:
        table = kaggle_hours_table(config, shape, source, args.test_rows)
        print(table)
        if args.out_md:
            with atomic_path(args.out_md) as tmp:
                tmp.write_text(table + "\n")
        return 0
    work = Workload.competition(run, config["folds"]["n"], args.rows, args.test_rows, args.mean_tokens)
    gpus, tflops = _gpus(args.gpu), args.tflops
    if gpus is None:  # this machine's GPU
        gpus, measured = _detected_gpu()
        tflops = tflops or measured
    rows = [plan_gpu(shape, run, gpu, work, saved_quantization, tflops) for gpu in gpus]
    header = (
        f"Plan for {source}: head {run.model.head}, quantization {saved_quantization or run.model.quantization}, "
        f"LoRA r={run.model.lora.r} on {', '.join(run.model.lora.target_modules)} "
        f"of the {run.model.lora.layers.replace('_', ' ')} layers; batch {run.train.batch_size} x "
        f"{run.model.max_length} tokens, accumulation {run.train.grad_accum}; inference "
        f"{run.predict.tokens_per_batch} tokens a batch. A fold: {work.train_rows:,} training rows, "
        f"{work.predict_rows:,} rows predicted, {work.mean_tokens:.0f} real tokens a row."
    )
    table = plan_table(rows)
    print(header + "\n\n" + table)
    if args.out_md:
        with atomic_path(args.out_md) as tmp:
            tmp.write_text(header + "\n\n" + table + "\n")
    if args.out_json:
        write_json_atomic(args.out_json, {"source": source, "rows": rows})
    return 0


def kaggle_hours_table(config: dict, shape, source: str, rows: int) -> str:
    from arenapref.config import RunConfig
    from arenapref.model.plan import GPU_CLASSES, competition_mean_tokens, kaggle_hours

    lengths = (1024, 2048)
    lines = [
        f"Hours to predict {rows:,} test rows on Kaggle's 2 x T4 ({source}, nf4, fp16; the folds share the "
        f"layers below the adapters; {GPU_CLASSES[16].predict_efficiency:.0%} of a T4's "
        f"{GPU_CLASSES[16].dense_tflops:.0f} TFLOP/s; "
        + ", ".join(f"{competition_mean_tokens(n):.0f} real tokens a row at {n}" for n in lengths)
        + "):",
        "",
        "| folds | swap TTA | " + " | ".join(f"max_length {n}" for n in lengths) + " |",
        "| ---: | --- | " + " | ".join("---:" for _ in lengths) + " |",
    ]
    for folds in (1, 3, 5):
        for tta in (False, True):
            hours = []
            for length in lengths:
                run = RunConfig.from_config({**config, "model": {**config["model"], "max_length": length}})
                hours.append(kaggle_hours(shape, run, folds, tta, rows))
            lines.append(
                f"| {folds} | {'yes' if tta else 'no'} | "
                + " | ".join(f"{h:.1f}" + (" (over 9 h)" if h > 9 else "") for h in hours)
                + " |"
            )
    return "\n".join(lines)


def _gpus(choice: str):
    from arenapref.model.plan import GPU_CLASSES

    if choice == "all":
        return list(GPU_CLASSES.values())
    if choice == "auto":
        import torch

        return None if torch.cuda.is_available() else list(GPU_CLASSES.values())
    try:
        return [GPU_CLASSES[int(choice)]]
    except (KeyError, ValueError):
        raise SystemExit(f"error: --gpu {choice!r}: use 16, 24, 40, 80, all or auto") from None


def _detected_gpu():
    import torch

    from arenapref.bench.hardware import matmul_rate
    from arenapref.model.modeling import auto_dtype
    from arenapref.model.plan import GpuClass

    device = torch.device("cuda", 0)
    properties = torch.cuda.get_device_properties(device)
    capability = torch.cuda.get_device_capability(device)
    dtype = auto_dtype("cuda", "nf4", capability)
    rate = matmul_rate(device, dtype, size=8192, seconds=1.0) / 1e12
    gpu = GpuClass(properties.name, round(properties.total_memory / 2**30, 1), capability, rate)
    return [gpu], rate


if __name__ == "__main__":
    run_main(main)
