"""A self-contained folder for Kaggle's notebook-only competition: the fold adapters, the
tokenizer they were trained with, this package and a small offline inference script.

Upload it with `kaggle datasets create -p DIR`, attach it and the base model to a notebook, and
run `python predict.py --base-model /kaggle/input/...`; nothing is fetched at run time.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from arenapref.config import SCHEMA_NAME, SCHEMA_PATH, RunConfig
from arenapref.errors import CheckpointError
from arenapref.evaluate.ensemble import Postprocessing
from arenapref.io import atomic_dir, dir_sha256, write_json_atomic
from arenapref.kaggle.offline_predict import MANIFEST
from arenapref.model.modeling import check_checkpoint
from arenapref.model.runtime import package_versions

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the whole arenapref package ships
PREDICT_SCRIPT = PACKAGE_DIR / "commands" / "kaggle_predict.py"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
)


def _copy_tokenizer(checkpoint: Path, dest: Path) -> list[str]:
    dest.mkdir(parents=True)
    copied = [name for name in TOKENIZER_FILES if (checkpoint / name).is_file()]
    if "tokenizer.json" not in copied and "tokenizer.model" not in copied:
        raise CheckpointError(f"{checkpoint}: no tokenizer.json or tokenizer.model to export")
    for name in copied:
        shutil.copy2(checkpoint / name, dest / name)
    return copied


def export_for_kaggle(
    out_dir: str | Path,
    adapters: Sequence[Path],
    checkpoint: Path,
    run: RunConfig,
    metrics: dict,
    dataset_id: str,
    postprocessing: Postprocessing | None = None,
    features_model: dict | None = None,
    wheels_python: str | None = None,
    wheel_index_args: list[str] | None = None,
    time_budget_hours: float = 8.0,
    soup: bool = False,
) -> Path:
    """Write the export folder atomically (staged beside `out_dir`, renamed into place).

    `postprocessing` and `features_model` (needed when it blends) make the export's predictions
    the same as submission.csv's. With `wheels_python` ("3.11": the Kaggle image's Python) the
    folder carries the pinned wheels predict.py needs besides torch, installed offline in the
    notebook. The manifest records the plan --time-budget would make for the hidden test set. With
    `soup` (ensemble.adapters: soup) predict.py predicts, unless told otherwise, with the soup of
    the folds (the full fit left out), built from the exported adapters when it loads them."""
    from arenapref.kaggle.wheels import wheels_for_export
    from arenapref.model.plan import ModelShape, kaggle_plan

    out = Path(out_dir)
    checkpoint = check_checkpoint(checkpoint)
    with atomic_dir(out) as staging:
        folds = []
        for adapter in adapters:
            adapter = Path(adapter)
            if not (adapter / "adapter_config.json").is_file():
                raise CheckpointError(f"{adapter}: not a trained adapter (no adapter_config.json)")
            name = adapter.parent.name  # results/folds/fold{k}/adapter -> fold{k}
            shutil.copytree(adapter, staging / "adapters" / name)
            folds.append({"name": name, "sha256": dir_sha256(adapter)})
        tokenizer_files = _copy_tokenizer(checkpoint, staging / "tokenizer")
        shutil.copytree(PACKAGE_DIR, staging / "arenapref", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(SCHEMA_PATH, staging / "arenapref" / SCHEMA_NAME)  # defaults and limits of the settings
        shutil.copy2(PREDICT_SCRIPT, staging / "predict.py")
        wheels = None
        if wheels_python:
            wheels = wheels_for_export(staging / "wheels", run.model.head, wheels_python, wheel_index_args)
        shape = ModelShape.from_checkpoint(checkpoint, run)
        soup_folds = [fold["name"] for fold in folds if fold["name"] != "full"]
        if soup and not soup_folds:
            raise CheckpointError("ensemble.adapters: soup, but no fold adapters (only the full fit) to make it of")
        manifest = {
            "settings": run.as_config(),
            "wheels": wheels,
            "kaggle_plan": kaggle_plan(shape, run, len(folds), time_budget_hours, soup=soup),
            "folds": folds,
            "soup": {"folds": soup_folds} if soup else None,
            "base_model": {"name": checkpoint.name, "trained_with": str(checkpoint)},
            "tokenizer_files": tokenizer_files,
            "oof": metrics.get("overall", {}),
            "postprocessing": (postprocessing or Postprocessing()).as_dict(),
            "features_model": features_model
            if postprocessing and postprocessing.features_blend_weight is not None
            else None,
            "config_hash": metrics.get("run", {}).get("config_hash"),
            "versions": package_versions(),
        }
        write_json_atomic(staging / MANIFEST, manifest)
        write_json_atomic(
            staging / "dataset-metadata.json",
            {
                "title": "arenapref fold adapters",
                "id": dataset_id,
                "licenses": [{"name": "CC0-1.0"}],
            },
        )
    return out
