"""Measure the pipeline against the original notebook's method on the same model, data and machine:
inference and training speed, padding, the fraction of the matrix-multiply rate reached, and
preprocessing at the competition's full size. Writes JSON and a markdown table."""

import argparse
import json
from pathlib import Path

from arenapref.cli import command
from arenapref.config import RunConfig, load_config_arg
from arenapref.model.model_files import check_checkpoint_files


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, type=Path, help="Kaggle-schema train.csv (rows to run the model on)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="local Llama checkpoint directory")
    parser.add_argument("--config", help="model/train/predict settings: inline JSON or a YAML/JSON file")
    parser.add_argument(
        "--preprocess-source",
        type=Path,
        help="rows to repeat up to 57,477 for the preprocessing benchmark (default: --train)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that every number is produced")
    parser.add_argument(
        "--no-gpu-large",
        action="store_true",
        help="on CUDA, skip the Llama-3.1-8B-shaped comparison in nf4 and bf16 (16 GB of disk, about 10 minutes)",
    )
    parser.add_argument(
        "--gpu-check",
        type=Path,
        default=Path("results/gpu-check/gpu_check.json"),
        help="figures of `make gpu-check` to show in the GPU section, when that file exists",
    )
    parser.add_argument(
        "--training-seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="run only the training comparison, once per seed, and report the mean difference",
    )
    parser.add_argument(
        "--oof-comparison",
        type=int,
        metavar="FOLDS",
        help="run only the out-of-fold comparison: every method trains every fold of FOLDS as configured",
    )
    parser.add_argument(
        "--oof-seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="with --oof-comparison: repeat ours against the tuned Trainer once per training seed (same folds) "
        "and report the mean difference",
    )
    parser.add_argument(
        "--shared-folds",
        type=int,
        metavar="FOLDS",
        help="run only the hand-in comparison: FOLDS adapters one at a time against all on one model "
        "with the lower layers shared",
    )
    parser.add_argument(
        "--attention-comparison",
        type=int,
        metavar="ROUNDS",
        help="run only CPU inference with eager attention against the sliced one, ROUNDS alternating rounds",
    )
    parser.add_argument("--out-json", required=True, type=Path)
    parser.add_argument("--out-md", required=True, type=Path)
    args = parser.parse_args()
    if args.oof_seeds and not args.oof_comparison:
        parser.error("--oof-seeds needs --oof-comparison FOLDS")
    # Before torch and transformers load: a missing, empty or incomplete checkpoint is one line.
    check_checkpoint_files(args.checkpoint)

    from arenapref.bench.quality import oof_comparison, oof_seed_study, training_seed_study
    from arenapref.bench.report import (
        render_markdown,
        render_oof_comparison,
        render_oof_seed_study,
        render_seed_study,
    )
    from arenapref.bench.suite import run_benchmark
    from arenapref.io import write_json_atomic, write_text_atomic

    run = RunConfig.from_config(load_config_arg(args.config))
    if args.shared_folds:
        from arenapref.bench.folds import bench_shared_folds, shared_folds_table
        from arenapref.data.preprocess import preprocess_train
        from arenapref.model.runtime import Runtime

        table, _ = preprocess_train(args.train, n_folds=2, seed=0)
        rt = Runtime.create(run, args.checkpoint)
        input_ids = rt.encode(table.head(40 if args.quick else 200))
        result = bench_shared_folds(args.checkpoint, run, rt, input_ids, args.shared_folds)
        write_json_atomic(args.out_json, result)
        write_text_atomic(args.out_md, shared_folds_table(result))
        print(shared_folds_table(result))
        return 0
    if args.attention_comparison:
        from arenapref.bench.attention import attention_comparison, render_attention_comparison
        from arenapref.bench.training import Sizes
        from arenapref.data.preprocess import preprocess_train
        from arenapref.model.runtime import Runtime

        # The rows the full benchmark's inference section runs on.
        table, _ = preprocess_train(args.train, n_folds=5, seed=run.train.seed)
        rt = Runtime.create(run, args.checkpoint)
        input_ids = rt.encode(table)[: Sizes.for_mode(args.quick).inference_rows]
        result = attention_comparison(rt, run, args.checkpoint, input_ids, args.attention_comparison)
        rendered = render_attention_comparison(result)
        write_json_atomic(args.out_json, result)
        write_text_atomic(args.out_md, rendered)
        print(rendered)
        return 0
    if args.training_seeds or args.oof_comparison:
        if args.training_seeds:
            study = training_seed_study(args.train, args.checkpoint, run, args.training_seeds, args.quick)
            table = render_seed_study(study)
        elif args.oof_seeds:
            study = oof_seed_study(args.train, args.checkpoint, run, args.oof_comparison, args.oof_seeds, args.quick)
            table = render_oof_seed_study(study)
        else:
            study = oof_comparison(args.train, args.checkpoint, run, args.oof_comparison, args.quick)
            table = render_oof_comparison(study)
        write_json_atomic(args.out_json, study)
        write_text_atomic(args.out_md, table)
        print(table)
        return 0
    source = args.preprocess_source if args.preprocess_source and args.preprocess_source.exists() else args.train
    gpu_check = json.loads(args.gpu_check.read_text()) if args.gpu_check.is_file() else None
    results = run_benchmark(
        args.train, args.checkpoint, run, args.quick, source, gpu_large=not args.no_gpu_large, gpu_check=gpu_check
    )
    table = render_markdown(results)
    write_json_atomic(args.out_json, results)
    write_text_atomic(args.out_md, table)
    print(table)
    print(json.dumps(results["targets"]))
    return 0


if __name__ == "__main__":
    main()
