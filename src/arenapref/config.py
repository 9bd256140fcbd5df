"""The run configuration: one schema (config/config.schema.yaml) is the single source of
defaults and limits, used by Snakemake's `validate` and by the scripts when run by hand."""

from __future__ import annotations

import copy
import json
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


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float
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
    swap_augmentation: bool
    label_smoothing: float
    seed: int


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
        out-of-memory error resumes the fold)."""
        data = self.as_config()
        data.pop("predict")
        data["train"].pop("gradient_checkpointing")
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
