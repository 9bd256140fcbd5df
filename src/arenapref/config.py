"""The run configuration: one schema (config/config.schema.yaml) is the single source of
defaults and limits, used by Snakemake's `validate` and by the scripts when run by hand."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import jsonschema
import yaml

from arenapref.errors import ConfigError
from arenapref.io import stable_hash

SCHEMA_NAME = "config.schema.yaml"


def _find_schema() -> Path:
    """The repository's config/ schema; in an exported folder (no repository), the copy that
    export_kaggle puts beside the package's modules."""
    here = Path(__file__).resolve().parent
    candidates = (here.parents[1] / "config" / SCHEMA_NAME, here / SCHEMA_NAME)
    return next((path for path in candidates if path.is_file()), candidates[0])


SCHEMA_PATH = _find_schema()


def _with_defaults(validator_class):
    """A validator that fills `default` values into the instance as it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate a config dict and return a copy with every default filled in."""
    schema = yaml.safe_load(schema_path.read_text())
    filled = copy.deepcopy(config)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    return filled


def _sets(source: str | Path | dict, path: list[str]) -> bool:
    """Whether the YAML config file (or the dict) sets the key at `path`."""
    if not source:
        return False
    try:
        node = source if isinstance(source, dict) else yaml.safe_load(Path(source).read_text())
    except (OSError, yaml.YAMLError):
        return False
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def config_error_line(
    config: dict[str, Any],
    files: Sequence[str | Path] = (),
    overrides: dict[str, Any] | None = None,
    schema_path: Path = SCHEMA_PATH,
) -> str | None:
    """An invalid config's first problem as one line, for the workflow (Snakemake's own message prints
    the schema): the key's path, what is wrong with it and the config file (or `overrides`, Snakemake's
    --config) that sets it. None if valid."""
    schema = yaml.safe_load(schema_path.read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(copy.deepcopy(config)), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    error = errors[0]
    path = [str(p) for p in error.absolute_path]
    known = list(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        path.append(str(next(key for key in error.instance if key not in known)))
        what = f"unknown key {'.'.join(path)} ({'.'.join(path[:-1]) or 'the top level'} takes {', '.join(known)})"
    else:
        message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        what = f"{'.'.join(path) or 'the top level'}: {message}"
    setting = [str(file) for file in files if _sets(file, path)] + (["--config"] if _sets(overrides, path) else [])
    where = f" in {' and '.join(setting)}" if setting else ""  # neither: the config a module was given
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid configuration{where}: {what}{more}"


def merged(base: dict[str, Any], *overlays: dict[str, Any]) -> dict[str, Any]:
    """Config dicts laid over one another as --configfile does: later ones win, key by key inside
    sections; the inputs are left as they were."""
    out = copy.deepcopy(base)
    for overlay in overlays:
        for key, value in overlay.items():
            out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def load_config_arg(value: str | None) -> dict[str, Any]:
    """A script's --config argument: inline JSON, or a path to a YAML/JSON file; validated."""
    if not value:
        raw: dict[str, Any] = {}
    elif value.lstrip().startswith("{"):
        raw = json.loads(value)
    else:
        raw = yaml.safe_load(Path(value).read_text()) or {}
    return validate_config(raw)


@dataclass(frozen=True)
class LoraSettings:
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    layers: str


@dataclass(frozen=True)
class ModelSettings:
    checkpoint: str | None
    head: str
    quantization: str
    max_length: int
    shares: tuple[float, float, float]
    lora: LoraSettings
    trust_remote_code: bool
    attn_implementation: str
    attn_softcapping: bool


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float
    distill_weight: float
    head_learning_rate: float | None
    epochs: int
    batch_size: int
    grad_accum: int
    chunk_size: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    optimizer: str
    precision: str
    gradient_checkpointing: str | bool
    swap_augmentation: bool | str  # False, True or "pair"
    label_smoothing: float
    seed: int
    deterministic: bool
    report_to: str


@dataclass(frozen=True)
class PredictSettings:
    tokens_per_batch: int
    max_batch_rows: int
    precision: str
    swap_tta: bool


@dataclass(frozen=True)
class RunConfig:
    """Everything the model-side code needs: the model, train, predict and device sections of a
    validated config, field for field (tests/test_config.py keeps them equal to the schema)."""

    model: ModelSettings
    train: TrainSettings
    predict: PredictSettings
    device: str

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunConfig:
        return _from_dict(cls, validate_config(config))

    def as_config(self) -> dict[str, Any]:
        """The settings in the config file's shape: from_config(as_config()) gives them back."""
        return _plain(asdict(self))

    def training_hash(self) -> str:
        """Hash of everything that changes the trained adapter (not inference batching, nor
        checkpointing, which trades memory for time with the same result: switching it on after an
        out-of-memory error resumes the fold; nor the choice of deterministic CUDA kernels, which
        computes the same thing; nor where the steps are reported)."""
        data = self.as_config()
        data.pop("predict")
        data["train"].pop("gradient_checkpointing")
        data["train"].pop("deterministic")
        data["train"].pop("report_to")
        return stable_hash(data)


def _from_dict(cls, data: dict[str, Any]):
    """A (nested) settings dataclass from its section of the config: one field per key."""
    hints = get_type_hints(cls)
    values = {}
    for field in fields(cls):
        value, hint = data[field.name], hints[field.name]
        if is_dataclass(hint):
            value = _from_dict(hint, value)
        elif get_origin(hint) is tuple:
            value = tuple(value)
        values[field.name] = value
    return cls(**values)


def _plain(value):
    """Tuples back to lists: JSON Schema's arrays are lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
