"""Prediction from an export folder, as the Kaggle notebook runs it: the chosen folds on one base
model with shared lower layers, every visible GPU busy with a shard of the rows, one CSV out.

With several GPUs (or `workers` > 1 on a CPU) this process predicts the first shard and starts one
worker process per other shard (`predict.py --shard i/n`), each pinned to its own GPU; shards
are dealt from rows sorted by length, so each holds about the same number of tokens. The merged
result equals one process's up to floating-point batch effects (padding of other rows: below 1e-5
in fp32).

With the soup (`--soup`, or by default when the export was made with ensemble.adapters: soup) the
chosen folds become one adapter, the mean of their weight changes (evaluate/soup.py), built from the
exported fold adapters when the model loads, and predict at the cost of one fold.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from arenapref import LABEL_COLUMNS
from arenapref.config import RunConfig
from arenapref.errors import ConfigError
from arenapref.io import atomic_path

log = logging.getLogger(__name__)

MANIFEST = "export.json"


@dataclass(frozen=True)
class PredictOptions:
    """What the notebook may change at prediction time; None keeps the exported setting."""

    folds: tuple[str, ...] | None = None  # adapter names ("fold0", "full"); None: every exported fold
    device: str | None = None
    precision: str | None = None
    tokens_per_batch: int | None = None
    max_length: int | None = None
    swap_tta: bool | None = None
    workers: int | None = None  # None: one per visible GPU (one on a CPU)
    time_budget_hours: float | None = None  # fewer folds, then no swap TTA, until the estimate fits
    soup: bool | None = None  # one adapter, the mean of the folds' weight changes; None: as exported

    def settings(self, exported: dict) -> dict:
        settings = json.loads(json.dumps(exported))
        if self.device is not None:
            settings["device"] = self.device
        predict = settings.setdefault("predict", {})
        for key, value in (
            ("precision", self.precision),
            ("tokens_per_batch", self.tokens_per_batch),
            ("swap_tta", self.swap_tta),
        ):
            if value is not None:
                predict[key] = value
        if self.max_length is not None:
            settings.setdefault("model", {})["max_length"] = self.max_length
        return settings

    def chosen_folds(self, manifest: dict) -> list[str]:
        exported = [fold["name"] for fold in manifest["folds"]]
        if self.folds is None:
            return exported
        unknown = [name for name in self.folds if name not in exported]
        if unknown:
            raise ConfigError(
                f"--folds {','.join(self.folds)}: {', '.join(unknown)} not in the export (it has {', '.join(exported)})"
            )
        return list(dict.fromkeys(self.folds))

    def soup_folds(self, manifest: dict) -> list[str] | None:
        """The adapters the soup is made of, or None to predict fold by fold. By default as the
        export says (ensemble.adapters: soup): its folds, without the full fit."""
        exported = manifest.get("soup") or {}
        if not (self.soup if self.soup is not None else bool(exported)):
            return None
        if self.folds is not None:
            return self.chosen_folds(manifest)
        return exported.get("folds") or [fold["name"] for fold in manifest["folds"] if fold["name"] != "full"]


def parse_folds(text: str | None) -> tuple[str, ...] | None:
    """`0,2,full` -> ("fold0", "fold2", "full")."""
    if not text or text == "all":
        return None
    return tuple(
        name if not name.isdigit() else f"fold{name}" for name in (part.strip() for part in text.split(",")) if name
    )


def parse_hours(text: str | None) -> float | None:
    """`8h`, `90m`, `2.5` (hours) -> hours."""
    if text is None:
        return None
    text = text.strip().lower()
    try:
        if text.endswith("h"):
            return float(text[:-1])
        if text.endswith("m"):
            return float(text[:-1]) / 60
        return float(text)
    except ValueError:
        raise ConfigError(f"--time-budget {text!r}: give hours (8h, 2.5) or minutes (90m)") from None


def read_manifest(export_dir: Path) -> dict:
    return json.loads((Path(export_dir) / MANIFEST).read_text(encoding="utf-8"))


def shard_rows(table: pl.DataFrame, shards: int) -> list[np.ndarray]:
    """Row positions of each shard: dealt from the rows sorted by text length, so shards carry
    about the same tokens (the sort also puts rows of similar length in the same batches)."""
    lengths = np.zeros(table.height, dtype=np.int64)
    for column in ("prompt", "response_a", "response_b"):
        if column in table.columns:
            lengths += table[column].list.join("").str.len_chars().fill_null(0).to_numpy()
    order = np.argsort(-lengths, kind="stable")
    return [np.sort(order[i::shards]) for i in range(shards)]


SOUP = "soup"


class FoldPredictor:
    """The base model with the chosen folds' adapters, loaded once; predicts any subset of them.
    With `soup` (fold names) it holds one adapter, named "soup", made of those folds."""

    def __init__(self, export_dir: Path, run: RunConfig, folds: list[str], base_model: Path, soup=None):
        from arenapref.evaluate.multifold import first_adapted_layer, load_fold_adapters
        from arenapref.model.modeling import inference_precision
        from arenapref.model.runtime import Runtime, check_inference_memory

        self.run = run
        self.rt = Runtime.create(run, base_model, tokenizer_dir=export_dir / "tokenizer")
        check_inference_memory(self.rt, run, base_model)
        with tempfile.TemporaryDirectory(prefix="arenapref-soup-") as tmp:
            if soup:
                from arenapref.evaluate.soup import make_soup

                # Built here rather than shipped: a second of reading the folds' adapters, where a shipped
                # soup would add their size again to the upload and fix which folds go into it.
                adapters = {SOUP: Path(tmp) / SOUP}
                make_soup([export_dir / "adapters" / name for name in soup], adapters[SOUP], names=soup)
            else:
                adapters = {name: export_dir / "adapters" / name for name in folds}
            fold_model = load_fold_adapters(self.rt.base_model(run, base_model), adapters)
            layers = fold_model.config.num_hidden_layers
            self.split = first_adapted_layer(adapters, layers)
        self.model = inference_precision(fold_model, self.rt.predict_dtype)  # as the pipeline predicts
        self.shared_fraction = self.split / layers  # of a forward pass, computed once for every fold

    def encode(self, rows: pl.DataFrame) -> list[list[int]]:
        """Input ids of `rows`, then of their swapped copies when swap TTA is on."""
        from arenapref.evaluate.job import encode_for_prediction

        return encode_for_prediction(self.rt, self.run, rows)

    def pass_cost(self, folds: int) -> float:
        from arenapref.model.plan import pass_cost

        return pass_cost(self.shared_fraction, folds)

    def predict(
        self, input_ids: list[list[int]], folds: list[str], rows: int, swap_tta: bool, on_batch=None
    ) -> dict[str, np.ndarray]:
        """Per-fold probabilities of `rows` rows; with swap TTA `input_ids` holds their swapped copies after them."""
        from arenapref.data.augment import tta_halves
        from arenapref.evaluate.multifold import predict_folds

        run = self.run
        probs = predict_folds(
            self.model,
            folds,
            input_ids,
            self.rt.device,
            self.rt.predict_dtype,
            self.rt.tokenizer.pad_token_id,
            run.predict.tokens_per_batch,
            run.predict.max_batch_rows,
            self.rt.head,
            self.split,
            on_batch=on_batch,
        )
        if swap_tta:
            probs = {fold: sum(tta_halves(p, rows)) / 2 for fold, p in probs.items()}
        return probs

    def seconds_per_pass_token(self, input_ids: list[list[int]], folds: list[str], batches: int = 3) -> float:
        """Measured on the longest rows' first batches (the slowest tokens: the estimate errs long)."""
        import time

        from arenapref.model.batching import token_budget_batches

        run = self.run
        lengths = [len(x) for x in input_ids]
        chosen = token_budget_batches(lengths, run.predict.tokens_per_batch, run.predict.max_batch_rows)[:batches]
        sample = [input_ids[i] for batch in chosen for i in batch]
        self.predict(sample[:1], folds, 1, False)  # warm-up: kernels, caches
        started = time.perf_counter()
        self.predict(sample, folds, len(sample), False)
        seconds = time.perf_counter() - started
        return seconds / (sum(len(x) for x in sample) * self.pass_cost(len(folds)))


def choose_plan(
    seconds_per_pass_token: float,
    tokens: int,
    folds: list[str],
    swap_tta: bool,
    pass_cost,
    budget_seconds: float,
    workers: int = 1,
) -> dict:
    """The most work that fits the budget: every fold with swap TTA first, then without it, then one
    fold fewer, and so on. `tokens` counts one order of every row; each worker takes its share."""
    options = []
    for count in range(len(folds), 0, -1):
        for tta in (True, False) if swap_tta else (False,):
            seconds = seconds_per_pass_token * tokens * (2 if tta else 1) * pass_cost(count) / workers
            options.append(
                {
                    "folds": folds[:count],
                    "swap_tta": tta,
                    "estimated_seconds": seconds,
                    "estimated_hours": round(seconds / 3600, 3),
                }
            )
    for option in options:
        if option["estimated_seconds"] <= budget_seconds:
            return option | {"options": options}
    return options[-1] | {"options": options, "over_budget": True}


def visible_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def predict_export(
    export_dir: str | Path, test_csv: str | Path, base_model: str | Path, options: PredictOptions = PredictOptions()
) -> tuple[list, np.ndarray, dict]:
    """Ids and fold-averaged probabilities for every row of `test_csv`, and what was done."""
    import time

    from arenapref.data.preprocess import preprocess_test
    from arenapref.model.modeling import check_checkpoint

    started = time.perf_counter()
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    run = RunConfig.from_config(options.settings(manifest["settings"]))
    soup = options.soup_folds(manifest)
    folds = [SOUP] if soup else options.chosen_folds(manifest)
    base_model = check_checkpoint(base_model, export_dir / "tokenizer")  # the export ships its tokenizer
    test, _ = preprocess_test(test_csv)
    gpus = visible_gpu_count() if run.device != "cpu" else 0
    workers = max(1, min(options.workers or max(1, gpus), test.height))
    shards = shard_rows(test, workers)
    if workers > 1 and gpus == 0:
        _share_cpu_threads(workers)
    predictor = FoldPredictor(export_dir, run, folds, base_model, soup=soup)
    first_rows = test[shards[0].tolist()]
    swap_tta = run.predict.swap_tta
    input_ids = predictor.encode(first_rows)
    done: dict = {"rows": test.height, "workers": workers, "soup": soup}
    if options.time_budget_hours is not None:
        rate = predictor.seconds_per_pass_token(input_ids[: first_rows.height], folds)
        tokens = sum(len(x) for x in input_ids[: first_rows.height]) * workers  # shards hold equal tokens
        left = options.time_budget_hours * 3600 - (time.perf_counter() - started)
        plan = choose_plan(rate, tokens, folds, swap_tta, predictor.pass_cost, left, workers)
        log.info(
            "time budget %.2f h (%.2f h left): %.1f pass-tokens/s measured; plan: %s, swap TTA %s, about %.2f h%s",
            options.time_budget_hours,
            left / 3600,
            1 / rate,
            ", ".join(plan["folds"]),
            "on" if plan["swap_tta"] else "off",
            plan["estimated_hours"],
            " (over the budget even so)" if plan.get("over_budget") else "",
        )
        folds, swap_tta = plan["folds"], plan["swap_tta"]
        input_ids = input_ids if swap_tta else input_ids[: first_rows.height]
        done["plan"] = {key: value for key, value in plan.items() if key != "options"} | {"options": plan["options"]}
    log.info(
        "predicting %d rows with %s on %d worker(s)%s",
        test.height,
        f"the soup of {', '.join(soup)}" if soup else ", ".join(folds),
        workers,
        ", swap TTA" if swap_tta else "",
    )
    chosen = dataclasses.replace(
        options, folds=tuple(soup or folds), soup=bool(soup), swap_tta=swap_tta, time_budget_hours=None
    )
    device = predictor.rt.device
    taken = (device.index or 0) if device.type == "cuda" else None  # the GPU this process holds
    with tempfile.TemporaryDirectory(prefix="arenapref-shards-") as tmp:
        processes = [
            _start_worker(
                export_dir, test_csv, base_model, chosen, i, workers, gpus, Path(tmp) / f"shard{i}.npz", taken
            )
            for i in range(1, workers)
        ]
        first = predictor.predict(input_ids, folds, first_rows.height, swap_tta)
        merged = {fold: np.zeros((test.height, 3)) for fold in folds}
        for fold in folds:
            merged[fold][shards[0]] = first[fold]
        for i, process in enumerate(processes, start=1):
            if process.wait() != 0:
                raise RuntimeError(
                    f"prediction worker {i} of {workers} failed (exit {process.returncode}); its log is above"
                )
            saved = np.load(Path(tmp) / f"shard{i}.npz")
            for fold in folds:
                merged[fold][shards[i]] = saved[fold]
    mean = np.mean([merged[fold] for fold in folds], axis=0)
    mean = mean / mean.sum(axis=1, keepdims=True)
    done |= {"folds": folds, "swap_tta": swap_tta, "seconds": round(time.perf_counter() - started, 1)}
    return test["id"].to_list(), mean, done | {"test": test}


def _share_cpu_threads(workers: int) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _start_worker(
    export_dir: Path,
    test_csv,
    base_model: Path,
    options: PredictOptions,
    index: int,
    workers: int,
    gpus: int,
    out: Path,
    taken: int | None = None,
) -> subprocess.Popen:
    """`predict.py --shard index/workers` in its own process; with GPUs, on the index-th of those
    this process (shard 0, on GPU `taken`) does not use."""
    env = dict(os.environ)
    if gpus:
        visible = env.get("CUDA_VISIBLE_DEVICES")
        ids = [part.strip() for part in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        free = [gpu for position, gpu in enumerate(ids) if position != taken]
        env["CUDA_VISIBLE_DEVICES"] = free[(index - 1) % len(free)]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    program = (
        [str(export_dir / "predict.py")]
        if (export_dir / "predict.py").is_file()
        else ["-m", "arenapref.commands.kaggle_predict"]
    )
    command = [
        sys.executable,
        *program,
        "--export-dir",
        str(export_dir),
        "--test",
        str(test_csv),
        "--base-model",
        str(base_model),
        "--folds",
        ",".join(options.folds),
        "--shard",
        f"{index}/{workers}",
        "--shard-out",
        str(out),
        *_option_args(options),
    ]
    return subprocess.Popen(command, env=env)


def _option_args(options: PredictOptions) -> list[str]:
    args = []
    for flag, value in (
        ("--device", options.device),
        ("--precision", options.precision),
        ("--tokens-per-batch", options.tokens_per_batch),
        ("--max-length", options.max_length),
    ):
        if value is not None:
            args += [flag, str(value)]
    if options.swap_tta is not None:
        args.append("--swap-tta" if options.swap_tta else "--no-swap-tta")
    if options.soup is not None:
        args.append("--soup" if options.soup else "--no-soup")
    return args


def predict_shard(
    export_dir: str | Path,
    test_csv: str | Path,
    base_model: str | Path,
    options: PredictOptions,
    shard: int,
    shards: int,
    out: Path,
) -> None:
    """A worker's part: the probabilities of one shard's rows for every chosen fold, saved as .npz."""
    from arenapref.data.preprocess import preprocess_test
    from arenapref.model.modeling import check_checkpoint

    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    run = RunConfig.from_config(options.settings(manifest["settings"]))
    soup = options.soup_folds(manifest)
    folds = [SOUP] if soup else options.chosen_folds(manifest)
    test, _ = preprocess_test(test_csv)
    rows = test[shard_rows(test, shards)[shard].tolist()]
    predictor = FoldPredictor(export_dir, run, folds, check_checkpoint(base_model, export_dir / "tokenizer"), soup)
    probs = predictor.predict(predictor.encode(rows), folds, rows.height, run.predict.swap_tta)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **probs)


def write_predictions(
    export_dir: str | Path,
    test_csv: str | Path,
    base_model: str | Path,
    out_csv: str | Path,
    options: PredictOptions = PredictOptions(),
) -> pl.DataFrame:
    """predict_export, then the exported post-processing, validated, written atomically."""
    from arenapref.data.row_kinds import rule_kinds
    from arenapref.evaluate.ensemble import Postprocessing
    from arenapref.evaluate.features import predict_features_model
    from arenapref.evaluate.submission import validate_submission, write_submission

    manifest = read_manifest(Path(export_dir))
    ids, mean, done = predict_export(export_dir, test_csv, base_model, options)
    postprocessing = Postprocessing(**manifest.get("postprocessing", {}))
    features = manifest.get("features_model")
    kinds = rule_kinds(done["test"]).to_numpy()  # the rows the exported rules judge, in the order of `ids`
    mean = postprocessing.apply(mean, predict_features_model(features, done["test"]) if features else None, kinds)
    submission = pl.DataFrame({"id": ids, **{c: mean[:, k] for k, c in enumerate(LABEL_COLUMNS)}})
    validate_submission(submission, ids)
    write_submission(submission, out_csv)
    return submission
