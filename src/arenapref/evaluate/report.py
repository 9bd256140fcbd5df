"""The figures and tables of the Snakemake report (`snakemake --report results/report.html`).

Every function reads pipeline outputs and writes one SVG or HTML file; nothing here is needed to
produce the submission.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a cluster node
matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller files, searchable titles

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from arenapref.evaluate.evaluation import probabilities  # noqa: E402
from arenapref.evaluate.metrics import log_loss  # noqa: E402
from arenapref.io import atomic_path, write_text_atomic  # noqa: E402

CLASS_NAMES = ("A wins", "B wins", "tie")
TABLE_STYLE = (
    "<style>table{border-collapse:collapse;font-family:sans-serif;font-size:14px}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}</style>"
)


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="svg", bbox_inches="tight")
    plt.close(fig)


def reliability_plot(oof: pl.DataFrame, path: str | Path, bins: int = 10) -> None:
    """Per class: mean predicted probability against the observed frequency, in equal-width bins."""
    probs, labels = probabilities(oof), oof["label"].to_numpy()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    for k, name in enumerate(CLASS_NAMES):
        which = np.clip(np.digitize(probs[:, k], edges) - 1, 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        predicted = [probs[which == b, k].mean() for b in filled]
        observed = [(labels[which == b] == k).mean() for b in filled]
        sizes = [20 + 180 * (which == b).mean() for b in filled]
        ax.plot(predicted, observed, marker="o", linewidth=1.5, label=name)
        ax.scatter(predicted, observed, s=sizes, alpha=0.3)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="predicted probability",
        ylabel="observed frequency",
        title=f"Reliability of the out-of-fold predictions ({len(labels)} rows)",
    )
    ax.legend(loc="upper left")
    _save(fig, path)


def confusion_plot(oof: pl.DataFrame, path: str | Path) -> None:
    """Counts of true outcome against the most probable predicted outcome."""
    predicted = probabilities(oof).argmax(axis=1)
    labels = oof["label"].to_numpy()
    counts = np.zeros((3, 3), dtype=int)
    np.add.at(counts, (labels, predicted), 1)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(3):
        for j in range(3):
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n({share[i, j]:.0%})",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.6 else "black",
            )
    ax.set(
        xticks=range(3),
        yticks=range(3),
        xticklabels=CLASS_NAMES,
        yticklabels=CLASS_NAMES,
        xlabel="predicted (most probable)",
        ylabel="true",
        title="Confusion matrix (out-of-fold)",
    )
    _save(fig, path)


def per_fold_plot(metrics: dict, features_oof: pl.DataFrame, train: pl.DataFrame, path: str | Path) -> None:
    """Log loss per fold and overall: the model, the class prior and the features baseline."""
    train = train.sort("id")
    features = probabilities(features_oof.sort("id"))
    labels, folds = train["label"].to_numpy(), train["fold"].to_numpy()
    names = sorted(metrics["per_fold"], key=int)
    model = [metrics["per_fold"][f]["log_loss"] for f in names] + [metrics["overall"]["log_loss"]]
    prior = [metrics["per_fold"][f]["prior_log_loss"] for f in names] + [metrics["overall"]["prior_log_loss"]]
    baseline = [log_loss(labels[folds == int(f)], features[folds == int(f)]) for f in names]
    baseline.append(metrics["features_baseline"]["log_loss"])
    x = np.arange(len(names) + 1)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.2 * len(x)), 4))
    for offset, values, label in (
        (-0.27, model, "model"),
        (0, baseline, "features baseline"),
        (0.27, prior, "class prior"),
    ):
        bars = ax.bar(x + offset, values, width=0.27, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set(
        xticks=x,
        xticklabels=[f"fold {f}" for f in names] + ["overall"],
        ylabel="log loss (lower is better)",
        title="Out-of-fold log loss per fold",
        ylim=(0, max(model + prior + baseline) * 1.35),
    )
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    _save(fig, path)


def training_curves_plot(train_logs: Sequence[dict], path: str | Path, window: int = 10) -> None:
    """Training loss per optimizer step for each fold (and its running mean over `window` steps)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for log in sorted(train_logs, key=lambda entry: entry["fold"]):
        steps = np.array([h["step"] for h in log["history"]])
        loss = np.array([h["loss"] for h in log["history"]])
        if len(loss) == 0:
            continue
        (line,) = ax.plot(steps, loss, alpha=0.25, linewidth=0.8)
        width = min(window, len(loss))
        smooth = np.convolve(loss, np.ones(width) / width, mode="valid")
        ax.plot(steps[width - 1 :], smooth, color=line.get_color(), linewidth=1.8, label=f"fold {log['fold']}")
    ax.set(
        xlabel="optimizer step",
        ylabel="training loss",
        title=f"Training loss per fold (thin: each step; thick: mean of {window} steps)",
    )
    ax.legend()
    _save(fig, path)


def token_length_plot(oof: pl.DataFrame, max_length: int, path: str | Path) -> None:
    """Input lengths before truncation, with the point where max_length cuts them."""
    lengths = oof["tokens_untruncated"].to_numpy()
    cut = float((lengths > max_length).mean())
    fig, ax = plt.subplots(figsize=(7, 4))
    upper = max(int(np.percentile(lengths, 99)), max_length) * 1.1
    ax.hist(np.clip(lengths, 0, upper), bins=50, color="#4c72b0")
    ax.axvline(max_length, color="#c44e52", linewidth=2, label=f"max_length {max_length}: {cut:.0%} of rows cut")
    ax.set(
        xlabel="tokens per conversation before truncation (longer ones at the right edge)",
        ylabel="rows",
        title=f"Input length ({len(lengths)} training rows; median {int(np.median(lengths))} tokens)",
    )
    ax.legend()
    _save(fig, path)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _page(title: str, *parts: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{TABLE_STYLE}"
        f"</head><body><h3>{html.escape(title)}</h3>{''.join(parts)}</body></html>\n"
    )


def scores_table(metrics: dict, path: str | Path) -> None:
    """Out-of-fold scores: per fold and overall, the references, swap TTA and each post-processing option."""
    per_fold = [
        [f"fold {f}", m["rows"], m["log_loss"], m["accuracy"], m["prior_log_loss"]]
        for f, m in sorted(metrics["per_fold"].items(), key=lambda item: int(item[0]))
    ]
    overall = metrics["overall"]
    per_fold.append(["overall", overall["rows"], overall["log_loss"], overall["accuracy"], overall["prior_log_loss"]])
    parts = [_table(["", "rows", "log loss", "accuracy", "class prior log loss"], per_fold)]
    reference = [
        ["model (out-of-fold)", overall["log_loss"]],
        ["class prior", overall["prior_log_loss"]],
        ["features baseline", metrics["features_baseline"]["log_loss"]],
    ]
    if "swap_tta" in metrics:
        tta = metrics["swap_tta"]
        reference += [
            ["model, A/B order as given", tta["log_loss_direct"]],
            ["model, A/B swapped", tta["log_loss_swapped"]],
            ["model, both orders averaged (swap TTA)", tta["log_loss_averaged"]],
        ]
    for name, value in metrics.get("postprocessing_cross_fitted", {}).items():
        reference.append([f"post-processing: {name} (cross-fitted)", value])
    parts += ["<h4>Against the references</h4>", _table(["", "log loss"], reference)]
    applied = metrics.get("postprocessing")
    if applied:
        rules = applied.get("rules")
        ruled = (
            "; ".join(f"{name} ({', '.join(f'{x:.3f}' for x in p)})" for name, p in rules.items()) if rules else "off"
        )
        chosen = f"{html.escape(applied['chosen'])}: " if applied.get("chosen") else ""
        why = f" Why: {html.escape(applied['why'])}." if applied.get("why") else ""
        parts.append(
            f"<p>Applied to the submission: {chosen}features blend weight "
            f"{_cell(applied.get('features_blend_weight')) or 'off'}, temperature "
            f"{_cell(applied.get('temperature')) or 'off'}, rules for rows the model cannot judge "
            f"{html.escape(ruled)}.{why}</p>"
        )
    effects = metrics.get("rules")
    if effects:
        rows = [
            [name, e["training_rows"], e["oof_rows"], e["oof_log_loss_model"], e["oof_log_loss_rule"]]
            for name, e in effects.items()
        ]
        header = ["rule", "training rows counted", "out-of-fold rows", "their log loss: model", "rule (cross-fitted)"]
        parts += ["<h4>Rows the model cannot judge</h4>", _table(header, rows)]
    write_text_atomic(path, _page("Out-of-fold scores", *parts))


def data_table(data_report: dict, path: str | Path) -> None:
    """Rows read, kept and dropped (with the reason) for train and test; labels and folds."""
    rows = []
    for split in ("train", "test"):
        part = data_report[split]
        reasons = ", ".join(f"{reason}: {count}" for reason, count in part["dropped"].items()) or "none"
        rows.append([split, part["file"], part["rows_in"], part["rows_kept"], part["dropped_total"], reasons])
    parts = [_table(["", "file", "rows read", "rows kept", "rows dropped", "dropped, by reason"], rows)]
    labels = [[name, count] for name, count in data_report.get("label_counts", {}).items()]
    shares = data_report.get("fold_label_shares", {})
    label_names = list(data_report.get("label_counts", {}))
    folds = [
        [f"fold {f}", n, *(shares.get(f, {}).get(name) for name in label_names)]
        for f, n in data_report.get("fold_rows", {}).items()
    ]
    grouping = data_report.get("grouping", {})
    left_out = [[t["turn"], t["rows"], t["reason"]] for t in grouping.get("most_frequent_turns_left_out", [])]
    parts += [
        "<h4>Labels (kept training rows)</h4>",
        _table(["winner", "rows"], labels),
        "<h4>Folds (grouped by prompt)</h4>",
        _table(["", "rows", *(f"share {name}" for name in label_names)], folds),
        f"<p>{data_report.get('prompt_groups', '?')} prompt groups; the largest has "
        f"{data_report.get('largest_prompt_group', '?')} rows "
        f"({_cell(data_report.get('largest_prompt_group_share'))} of them).</p>",
    ]
    if grouping:
        parts += [
            f"<h4>Turns that group no rows ({grouping['turns_left_out']}; in more than "
            f"{grouping['max_turn_rows']} rows or under {grouping['min_turn_chars']} characters)</h4>",
            _table(["turn", "rows", "why"], left_out),
        ]
    write_text_atomic(path, _page("Data", *parts))


def markdown_table_html(markdown: str) -> str:
    """The benchmark's markdown (paragraphs and pipe tables) as HTML."""
    parts, table = [], []

    def flush():
        if table:
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
            body = [row for row in cells[1:] if not all(set(c) <= set("-: ") for c in row)]
            parts.append(_table(cells[0], body))
            table.clear()

    for line in markdown.splitlines():
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        flush()
        if line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "".join(parts)


def benchmark_table(benchmark_md: str | Path | None, path: str | Path) -> None:
    if benchmark_md is None:
        body = "<p>No benchmark has run. <code>make benchmark</code> measures speed against the original method.</p>"
    else:
        body = markdown_table_html(Path(benchmark_md).read_text(encoding="utf-8"))
    write_text_atomic(path, _page("Benchmark", body))
