"""The benchmark's results as a markdown table (README, Snakemake report)."""

from __future__ import annotations


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _num(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _training_speed_row(tr: dict) -> str:
    ours, base = tr["ours"], tr["baseline"]
    return _row(
        [
            f"training real tokens/s ({ours['optimizer_steps']} steps x 16 rows; ours batch {ours['batch_size']} "
            f"x accumulation {ours['grad_accum']} {ours['dtype']}, original 4 x 4 {base['dtype']})",
            _num(ours["real_tokens_per_s"]),
            _num(base["real_tokens_per_s"]),
            _num(tr["tokens_per_s_ratio"], 2),
        ]
    )


def _held_out_row(tr: dict) -> str:
    return _row(
        [
            f"held-out log loss after training ({tr['eval_rows']} rows, seed {tr['seed']}; class prior "
            f"{tr['class_prior_log_loss']:.4f}); ratio column: ours - original, paired standard error",
            _num(tr["ours"]["log_loss"], 4),
            _num(tr["baseline"]["log_loss"], 4),
            f"{tr['log_loss_difference']:+.4f} ± {tr['log_loss_difference_se']:.4f}",
        ]
    )


def render_seed_study(study: dict) -> str:
    """The training comparison over several seeds: speed and held-out log loss per seed, and the mean."""
    model = study["model"]
    lines = [
        f"Training, ours versus the original method, over {len(study['runs'])} seeds ({study['mode']} mode): "
        f"{model['checkpoint']} on {model['device']}, {study['data']['rows']} rows of {study['data']['train_csv']}; "
        f"{study['seconds']:.0f} s in all.",
        "",
        _row(["seed", "ours log loss", "original log loss", "ours - original (paired SE)", "tokens/s ratio"]),
        _row(["---", "---:", "---:", "---:", "---:"]),
    ]
    for run in study["runs"]:
        lines.append(
            _row(
                [
                    run["seed"],
                    _num(run["ours"]["log_loss"], 4),
                    _num(run["baseline"]["log_loss"], 4),
                    f"{run['log_loss_difference']:+.4f} ({run['log_loss_difference_se']:.4f})",
                    _num(run["tokens_per_s_ratio"], 2),
                ]
            )
        )
    lines.append(
        _row(
            [
                "mean",
                _num(sum(r["ours"]["log_loss"] for r in study["runs"]) / len(study["runs"]), 4),
                _num(sum(r["baseline"]["log_loss"] for r in study["runs"]) / len(study["runs"]), 4),
                f"{study['mean_log_loss_difference']:+.4f} (SE over seeds {study['standard_error']:.4f})",
                _num(study["mean_tokens_per_s_ratio"], 2),
            ]
        )
    )
    lines += ["", f"Ours has the lower held-out log loss in {study['ours_better_in']} of {len(study['runs'])} seeds."]
    return "\n".join(lines) + "\n"


def render_oof_comparison(study: dict) -> str:
    """Out-of-fold log loss of both training methods over whole folds, per fold and overall."""
    model, ours, original = study["model"], study["ours"], study["original"]
    lines = [
        f"Out-of-fold comparison ({study['mode']} mode): {model['checkpoint']} on {model['device']}, "
        f"{study['data']['rows']} rows of {study['data']['train_csv']}, {study['data']['folds']} folds, "
        f"{ours['epochs']} epoch(s); ours batch {ours['batch_size']} x accumulation {ours['grad_accum']} "
        f"{model['dtype']}, original 4 x 4; {study['seconds']:.0f} s in all.",
        "",
        _row(["fold", "ours log loss", "original log loss"]),
        _row(["---", "---:", "---:"]),
    ]
    for fold, scores in study["per_fold"].items():
        lines.append(_row([fold, _num(scores["ours"], 4), _num(scores["original"], 4)]))
    lines += [
        _row(["all", _num(ours["log_loss"], 4), _num(original["log_loss"], 4)]),
        "",
        f"Ours - original: {study['log_loss_difference']:+.4f} (paired standard error "
        f"{study['log_loss_difference_se']:.4f}); training seconds {ours['seconds']:.0f} vs "
        f"{original['seconds']:.0f} ({study['speedup']:.2f}x).",
    ]
    return "\n".join(lines) + "\n"


def render_markdown(results: dict) -> str:
    inf, tr, pre = results["inference"], results["training"], results["preprocessing"]
    model, machine = results["model"], results["machine"]
    rates = ", ".join(f"{name} {rate / 1e9:.1f}" for name, rate in results["matmul_flops_per_s"].items())
    ours, base = inf["ours"], inf["baseline"]
    lines = [
        f"Benchmark ({results['mode']} mode): {model['checkpoint']} on {model['device']} (training "
        f"{model['dtype']}, inference {model['predict_dtype']}, quantization {model['quantization']}, "
        f"max_length {model['max_length']}); {machine['cpu']}, {machine['torch_threads']} torch threads; "
        f"matrix-multiply rate (GFLOP/s): {rates}; {results['seconds']:.0f} s in all.",
        "",
        _row(["measure", "ours", "original method", "ratio"]),
        _row(["---", "---:", "---:", "---:"]),
        _row(
            [
                f"inference rows/s ({inf['rows']} rows; ours {ours['dtype']}, original {base['dtype']})",
                _num(ours["rows_per_s"], 2),
                _num(base["rows_per_s"], 2),
                _num(inf["speedup"], 2),
            ]
        ),
        _row(
            [
                "inference real tokens/s",
                _num(ours["real_tokens_per_s"]),
                _num(base["real_tokens_per_s"]),
                _num(inf["speedup"], 2),
            ]
        ),
    ]
    if "ours_same_precision" in inf:
        same = inf["ours_same_precision"]
        lines.append(
            _row(
                [
                    f"inference real tokens/s, both {same['dtype']}",
                    _num(same["real_tokens_per_s"]),
                    _num(base["real_tokens_per_s"]),
                    _num(inf["speedup_same_precision"], 2),
                ]
            )
        )
    lines += [
        _row(
            [
                "inference padding efficiency",
                _num(ours["padding_efficiency"], 3),
                _num(base["padding_efficiency"], 3),
                "",
            ]
        ),
        _row(
            [
                "inference fraction of the matmul rate (same dtype)",
                _num(ours["fraction_of_matmul_rate"], 3),
                _num(base["fraction_of_matmul_rate"], 3),
                "",
            ]
        ),
        _training_speed_row(tr),
    ]
    if "ours_same_precision" in tr:
        same = tr["ours_same_precision"]
        lines.append(
            _row(
                [
                    f"training real tokens/s, both {same['dtype']}",
                    _num(same["real_tokens_per_s"]),
                    _num(tr["baseline"]["real_tokens_per_s"]),
                    _num(tr["tokens_per_s_ratio_same_precision"], 2),
                ]
            )
        )
    lines += [
        _row(
            [
                "training padding efficiency",
                _num(tr["ours"]["padding_efficiency"], 3),
                _num(tr["baseline"]["padding_efficiency"], 3),
                "",
            ]
        ),
        _held_out_row(tr),
        _row(
            [
                f"preprocessing seconds ({pre['rows']:,} rows, {pre['csv_mb']:.0f} MB)",
                _num(pre["ours"]["seconds"], 2),
                _num(pre["baseline"]["seconds"], 2),
                _num(pre["speedup"], 2),
            ]
        ),
        _row(
            [
                "preprocessing peak memory MB",
                _num(pre["ours"]["peak_rss_mb"], 0),
                _num(pre["baseline"]["peak_rss_mb"], 0),
                _num(pre["peak_memory_ratio"], 2),
            ]
        ),
    ]
    if "gpu_llama8b" in results:
        lines += [
            "",
            _row(
                [
                    "Llama-3.1-8B shape, random weights",
                    "ours tokens/s",
                    "original tokens/s",
                    "ratio",
                    "fraction of matmul rate",
                ]
            ),
            _row(["---", "---:", "---:", "---:", "---:"]),
        ]
        for mode, entry in results["gpu_llama8b"].items():
            if "error" in entry:
                lines.append(_row([mode, entry["error"], "", "", ""]))
                continue
            lines.append(
                _row(
                    [
                        mode,
                        _num(entry["ours"]["real_tokens_per_s"]),
                        _num(entry["baseline"]["real_tokens_per_s"]),
                        _num(entry["speedup"], 2),
                        _num(entry["ours"]["fraction_of_matmul_rate"], 3),
                    ]
                )
            )
    lines += ["", _row(["target", "wanted", "measured", "met"]), _row(["---", "---", "---:", "---"])]
    for name, check in results["targets"].items():
        wanted = check["target"] if isinstance(check["target"], str) else f">= {check['target']}"
        lines.append(_row([name, wanted, _num(check["measured"], 3), "yes" if check["met"] else "no"]))
    return "\n".join(lines) + "\n"
