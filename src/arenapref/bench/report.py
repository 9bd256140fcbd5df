"""The benchmark's results as a markdown table (README, Snakemake report)."""

from __future__ import annotations


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _num(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


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
    """Out-of-fold log loss of the training methods over whole folds, per fold and overall."""
    model, ours, tuned = study["model"], study["ours"], study["tuned"]
    sides = [side for side in ("ours", "tuned", "original") if side in study]
    names = {"ours": "ours", "tuned": "tuned Trainer", "original": "original"}
    described = "; original 4 x 4 shuffled" if "original" in study else ""
    lines = [
        f"Out-of-fold comparison ({study['mode']} mode): {model['checkpoint']} on {model['device']}, "
        f"{study['data']['rows']} rows of {study['data']['train_csv']}, {study['data']['folds']} folds, "
        f"{ours['epochs']} epoch(s), training seed {study.get('seed', '-')}; ours batch {ours['batch_size']} x "
        f"accumulation {ours['grad_accum']} length-grouped {model['dtype']}; tuned Trainer {tuned['batch_size']} x "
        f"{tuned['grad_accum']} group_by_length {model['dtype']}{described}; {study['seconds']:.0f} s in all.",
        "",
        _row(["fold", *(f"{names[side]} log loss" for side in sides)]),
        _row(["---", *("---:" for _ in sides)]),
    ]
    for fold, scores in study["per_fold"].items():
        lines.append(_row([fold, *(_num(scores[side], 4) for side in sides)]))
    lines += [
        _row(["all", *(_num(study[side]["log_loss"], 4) for side in sides)]),
        _row(["training seconds", *(f"{study[side]['seconds']:.0f}" for side in sides)]),
        "",
    ]
    for side, name in (("tuned", "the tuned Trainer"), ("original", "the original")):
        if side in study:
            lines.append(
                f"Ours - {name}: {study[f'log_loss_difference_{side}']:+.4f} (paired standard error "
                f"{study[f'log_loss_difference_{side}_se']:.4f}); its training time / ours: "
                f"{study[f'speedup_{side}']:.2f}."
            )
    return "\n".join(lines) + "\n"


def render_oof_seed_study(study: dict) -> str:
    """The out-of-fold comparison of ours and the tuned Trainer over several training seeds."""
    model, runs = study["model"], study["runs"]
    lines = [
        f"Out-of-fold comparison over {len(runs)} training seeds ({study['mode']} mode): {model['checkpoint']} on "
        f"{model['device']}, {study['data']['rows']} rows of {study['data']['train_csv']}, "
        f"{study['data']['folds']} folds drawn with seed {runs[0]['fold_seed']}; {study['seconds']:.0f} s in all.",
        "",
        _row(["training seed", "ours log loss", "tuned Trainer log loss", "ours - tuned (paired SE)", "time ratio"]),
        _row(["---", "---:", "---:", "---:", "---:"]),
    ]
    for run in runs:
        difference = f"{run['log_loss_difference_tuned']:+.4f} ({run['log_loss_difference_tuned_se']:.4f})"
        row = [run["seed"], _num(run["ours"]["log_loss"], 4), _num(run["tuned"]["log_loss"], 4), difference]
        lines.append(_row([*row, _num(run["speedup_tuned"], 2)]))
    mean = {side: sum(r[side]["log_loss"] for r in runs) / len(runs) for side in ("ours", "tuned")}
    spread = f"{study['mean_log_loss_difference']:+.4f} (SE over seeds {study['standard_error']:.4f})"
    lines += [
        _row(["mean", _num(mean["ours"], 4), _num(mean["tuned"], 4), spread, ""]),
        "",
        f"Ours has the lower out-of-fold log loss in {study['ours_better_in']} of {len(runs)} seeds.",
    ]
    return "\n".join(lines) + "\n"


def check_table(report: dict) -> str:
    """The report as Markdown: what the README's GPU section shows."""
    m = report["machine"]
    where = m.get("gpu") and f"{m['gpu']} ({m['memory_gib']} GiB, compute capability {m['capability']})" or m["device"]
    lines = [
        f"GPU check on {where}, {report['date']}: torch {m['torch']}, transformers {m['transformers']}, "
        f"peft {m['peft']}, bitsandbytes {m.get('bitsandbytes', '-')}; {report['seconds']} s in all.",
        *_ceiling_lines(report.get("matmul_ceiling", [])),
        "",
        "| training step | rows x tokens | peak GiB measured | planned | planned / measured | real tokens/s "
        "| fraction of the matmul rate |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in report["training"]:
        if "error" in case:
            lines.append(f"| failed: {case['error']} | | | | | | |")
            continue
        name = f"{report['quantization']} {case['dtype']}" + (
            " + checkpointing" if case["gradient_checkpointing"] else ""
        )
        lines.append(
            f"| {name} | {case['rows']} x {case['length']} | {case['measured_peak_gib']} "
            f"| {case['planned_peak_gib']} | {case['planned_over_measured']} | {case['tokens_per_second']:,} "
            f"| {case.get('fraction_of_matmul_rate', '-')} |"
        )
    lines += [
        "",
        "| inference batch | rows x tokens | peak GiB measured | planned | planned / measured "
        "| real tokens/s | fraction of the matmul rate |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in report["inference"]:
        if "error" in case:
            lines.append(f"| {case.get('quantization', report['quantization'])} failed: {case['error']} | | | | | | |")
            continue
        lines.append(
            f"| {case.get('quantization', report['quantization'])} {case['dtype']} | {case['rows']} x {case['length']} "
            f"| {case['measured_peak_gib']} | {case['planned_peak_gib']} | {case['planned_over_measured']} "
            f"| {case['tokens_per_second']:,} | {case['fraction_of_matmul_rate']} |"
        )
    same = report.get("determinism")
    if same:
        outcome = (
            f"failed: {same['error']}"
            if "error" in same
            else f"{same['steps']} steps of {same['rows']} x {same['length']} in {same['dtype']} (train.deterministic "
            f"{str(same['deterministic']).lower()}), largest difference in loss {same['max_loss_difference']:.3g}, "
            f"in adapter weights {same['max_adapter_difference']:.3g}"
        )
        lines += ["", f"Two trainings from one seed: {outcome}"]
    pipeline = report.get("pipeline")
    if pipeline:
        outcome = pipeline.get("skipped") or pipeline.get("error", "")[:200] or f"submission in {pipeline['seconds']} s"
        lines += ["", f"Snakemake pipeline with a tiny random Llama: {outcome}"]
    return "\n".join(lines)


def _ceiling_text(ceiling: dict) -> str:
    tflops = ceiling["tflops"]
    rate = f"{tflops:.1f} TFLOP/s" if tflops >= 1 else f"{tflops * 1e3:.1f} GFLOP/s"
    measured = f"{ceiling['dtype']} {rate} (best at {ceiling['size']}^3)"
    if ceiling.get("rated_tflops") is None:
        return f"{measured}, no rated figure for {ceiling['device']}"
    return f"{measured}, {ceiling['over_rated']:.2f} of the {ceiling['rated_tflops']:.0f} rated for {ceiling['device']}"


def _ceiling_lines(ceilings: list[dict]) -> list[str]:
    """What every "fraction of the matmul rate" is over: the measured ceiling, beside the rated peak."""
    if not ceilings:
        return []
    described = "; ".join(map(_ceiling_text, ceilings))
    return ["", "Fractions of the matmul rate are over the measured ceiling: " + described]


def _ratio(value: float | None) -> str:
    return "" if value is None else _num(value, 2)


def _speed_rows(label: str, sides: dict, key: str, digits: int = 1, ratios: bool = True) -> str:
    """One measure for ours, the tuned Trainer and the original, with ours' ratio to each."""
    ours, tuned, original = (sides[name].get(key) for name in ("ours", "tuned", "baseline"))
    cells = [label] + ["" if v is None else _num(v, digits) for v in (ours, tuned, original)]
    if ratios and ours is not None:
        cells += [_ratio(ours / tuned if tuned else None), _ratio(ours / original if original else None)]
    else:
        cells += ["", ""]
    return _row(cells)


SIDES_HEADER = (
    _row(["measure", "ours", "tuned Trainer", "original", "ours / tuned", "ours / original"]),
    _row(["---", "---:", "---:", "---:", "---:", "---:"]),
)


def _held_out_row(training: dict) -> str:
    """Held-out log loss of the three trained sides, and ours minus each other side (paired)."""
    seed = f", seed {training['seed']}" if "seed" in training else ""
    return _row(
        [
            f"held-out log loss after training ({training['eval_rows']} rows{seed}; class prior "
            f"{training['class_prior_log_loss']:.4f}); ratio columns: ours minus the other, paired standard error",
            _num(training["ours"]["log_loss"], 4),
            _num(training["tuned"]["log_loss"], 4),
            _num(training["baseline"]["log_loss"], 4),
            f"{training['log_loss_difference_over_tuned']:+.4f} ± {training['log_loss_difference_over_tuned_se']:.4f}",
            f"{training['log_loss_difference']:+.4f} ± {training['log_loss_difference_se']:.4f}",
        ]
    )


def _gpu_section(results: dict) -> list[str]:
    check = results.get("gpu_check")
    if check is None:
        return [
            "",
            "GPU: no GPU check has run on this machine (`make gpu-check` on a CUDA machine writes "
            "results/gpu-check/gpu_check.json, which this benchmark then shows).",
        ]
    return ["", check_table(check)]


def render_markdown(results: dict) -> str:
    inf, tr, pre = results["inference"], results["training"], results["preprocessing"]
    model, machine = results["model"], results["machine"]
    rates = ", ".join(f"{name} {rate / 1e9:.1f} GFLOP/s" for name, rate in results["matmul_flops_per_s"].items())
    if "matmul_ceiling" in results:  # the best over sizes, beside the device's rated peak
        rates = "; ".join(_ceiling_text(ceiling) for ceiling in results["matmul_ceiling"].values())
    ours, tuned, base = inf["ours"], inf["tuned"], inf["baseline"]
    lines = [
        f"Benchmark ({results['mode']} mode): {model['checkpoint']} on {model['device']} (training "
        f"{model['dtype']}, inference {model['predict_dtype']}, quantization {model['quantization']}, "
        f"max_length {model['max_length']}); {machine['cpu']}, {machine['torch_threads']} torch threads; "
        f"matrix-multiply ceiling (what the fractions are over): {rates}; {results['seconds']:.0f} s in all.",
        "",
        f"Inference: {inf['rows']} rows; ours {ours['dtype']} (token budget {ours['tokens_per_batch']}, adapter "
        f"merged where the base is unquantized); tuned Trainer {tuned['dtype']}, rows sorted by length, batch "
        f"{tuned['batch_size']}; original {base['dtype']}, file order, batch {base['batch_size']}. Training: "
        f"{tr['ours']['optimizer_steps']} steps x {tr['ours']['batch_size'] * tr['ours']['grad_accum']} rows; ours "
        f"{tr['ours']['batch_size']} x {tr['ours']['grad_accum']} length-grouped {tr['ours']['dtype']}; tuned "
        f"Trainer {tr['tuned']['batch_size']} x {tr['tuned']['grad_accum']} group_by_length {tr['tuned']['dtype']}; "
        f"original 4 x 4 shuffled {tr['baseline']['dtype']}.",
        "",
        *SIDES_HEADER,
        _speed_rows("inference rows/s", inf, "rows_per_s", 2),
        _speed_rows("inference real tokens/s", inf, "real_tokens_per_s"),
        _speed_rows("inference padding efficiency", inf, "padding_efficiency", 3, ratios=False),
        _speed_rows("inference fraction of the matmul rate (its dtype)", inf, "fraction_of_matmul_rate", 3, False),
    ]
    if "dense_layer_roof" in inf:
        roof = inf["dense_layer_roof"]
        lines.append(
            _row(
                [
                    f"inference fraction of this model's dense layers as bare matrix products ({roof['tokens']:,} "
                    f"tokens, {roof['dtype']}: {roof['flops_per_s'] / 1e9:.1f} GFLOP/s); ours / tuned: the most "
                    "any method could reach",
                    _num(roof["ours_fraction"], 3),
                    _num(roof["tuned_fraction"], 3),
                    "",
                    _num(roof["most_over_tuned"], 2),
                    "",
                ]
            )
        )
    if "ours_same_precision" in inf:
        same = inf["ours_same_precision"]
        lines.append(
            _row(
                [
                    f"inference real tokens/s, ours in {same['dtype']}",
                    _num(same["real_tokens_per_s"]),
                    "",
                    _num(base["real_tokens_per_s"]),
                    "",
                    _num(inf["speedup_same_precision"], 2),
                ]
            )
        )
    lines += [
        _speed_rows("training real tokens/s", tr, "real_tokens_per_s"),
        _speed_rows("training padding efficiency", tr, "padding_efficiency", 3, ratios=False),
        _speed_rows("training fraction of the matmul rate (its dtype)", tr, "fraction_of_matmul_rate", 3, False),
    ]
    if "ours_same_precision" in tr:
        same = tr["ours_same_precision"]
        lines.append(
            _row(
                [
                    f"training real tokens/s, ours in {same['dtype']}",
                    _num(same["real_tokens_per_s"]),
                    "",
                    _num(tr["baseline"]["real_tokens_per_s"]),
                    "",
                    _num(tr["tokens_per_s_ratio_same_precision"], 2),
                ]
            )
        )
    lines += [
        _held_out_row(tr),
        _row(
            [
                f"preprocessing seconds ({pre['rows']:,} rows, {pre['csv_mb']:.0f} MB; original: pandas + "
                "ast.literal_eval)",
                _num(pre["ours"]["seconds"], 2),
                "",
                _num(pre["baseline"]["seconds"], 2),
                "",
                _num(pre["speedup"], 2) + " (original / ours)",
            ]
        ),
        _row(
            [
                "preprocessing peak memory MB",
                _num(pre["ours"]["peak_rss_mb"], 0),
                "",
                _num(pre["baseline"]["peak_rss_mb"], 0),
                "",
                _num(pre["peak_memory_ratio"], 2),
            ]
        ),
    ]
    if "gpu_benchmark" in results:
        lines += ["", render_gpu_benchmark(results["gpu_benchmark"]).rstrip("\n")]
    lines += _gpu_section(results)
    lines += ["", _row(["target", "wanted", "measured", "met"]), _row(["---", "---", "---:", "---"])]
    for name, check in results["targets"].items():
        wanted = check["target"] if isinstance(check["target"], str) else f">= {check['target']}"
        lines.append(_row([name, wanted, _num(check["measured"], 3), "yes" if check["met"] else "no"]))
    return "\n".join(lines) + "\n"


def render_gpu_benchmark(report: dict) -> str:
    """The GPU benchmark (gpu_benchmark.py) as Markdown: per weight format, ours against the tuned
    Trainer and the original method in inference and training."""
    m, shape, data, sizes = report["machine"], report["shape"], report["data"], report["sizes"]
    where = m.get("gpu") and f"{m['gpu']} ({m['memory_gib']} GiB)" or m["device"]
    lines = [
        f"GPU benchmark ({report['mode']} mode) on {where}, {report['date']}: torch {m['torch']}, transformers "
        f"{m['transformers']}, peft {m['peft']}, bitsandbytes {m.get('bitsandbytes', '-')}; a "
        f"{shape.get('model_type', 'llama')} shape ({shape['num_hidden_layers']} layers, hidden "
        f"{shape['hidden_size']}, random weights); {data['rows']} rows of {data['train_csv']} "
        f"({data['dropped_empty_text']} dropped for an empty text) tokenized by {report['tokenizer']}; inference on "
        f"{sizes['inference_rows']} rows, training {sizes['train_steps']} steps x 16 rows, held out "
        f"{sizes['eval_rows']} rows; {report['seconds']} s in all.",
        *_ceiling_lines(report.get("matmul_ceiling", [])),
    ]
    lengths = report["lengths"]
    lines += [
        "",
        f"Rows of {lengths['mean_tokens']:.0f} tokens on average (median {lengths['median_tokens']:.0f}, longest "
        f"{lengths['max_tokens']}, {lengths['truncated_share']:.1%} cut at {lengths['max_length']}).",
    ]
    for quantization, entry in report["formats"].items():
        runtime = entry["runtime"]
        lines += [
            "",
            f"**{quantization}** (training {runtime['dtype']}, inference {runtime['predict_dtype']}).",
            "",
            *SIDES_HEADER,
        ]
        for part, sides in (("inference", entry["inference"]), ("training", entry["training"])):
            if "error" in sides:
                lines.append(_row([f"{part} failed: {sides['error']}", "", "", "", "", ""]))
                continue
            lines += [
                _speed_rows(f"{part} real tokens/s", sides, "real_tokens_per_s"),
                _speed_rows(f"{part} padding efficiency", sides, "padding_efficiency", 3, ratios=False),
                _speed_rows(f"{part} fraction of the matmul rate", sides, "fraction_of_matmul_rate", 3, ratios=False),
            ]
        training = entry["training"]
        if "error" not in training:
            lines.append(_held_out_row(training))
    return "\n".join(lines) + "\n"
