"""The run configuration: one schema (config/config.schema.yaml) is the single source of
defaults and limits, used by Snakemake's `validate` and by the scripts when run by hand."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

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
class ModelSettings:
    head: str
    quantization: str
    max_length: int
    shares: tuple[float, float, float]
    lora_r: int
    lora_alpha: float
    lora_dropout: float
    lora_target_modules: tuple[str, ...]
    lora_layers: str
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
    """Everything the model-side code needs, built from a validated config dict."""

    model: ModelSettings
    train: TrainSettings
    predict: PredictSettings
    device: str

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunConfig:
        config = validate_config(config)
        model = config["model"]
        lora = model["lora"]
        return cls(
            model=ModelSettings(
                head=model["head"],
                quantization=model["quantization"],
                max_length=model["max_length"],
                shares=tuple(model["shares"]),
                lora_r=lora["r"],
                lora_alpha=lora["alpha"],
                lora_dropout=lora["dropout"],
                lora_target_modules=tuple(lora["target_modules"]),
                lora_layers=lora["layers"],
                trust_remote_code=model["trust_remote_code"],
            ),
            train=TrainSettings(**config["train"]),
            predict=PredictSettings(**config["predict"]),
            device=config["device"],
        )

    def as_dict(self) -> dict[str, Any]:
        def plain(obj):
            return {f.name: getattr(obj, f.name) for f in fields(obj)}

        return {"model": plain(self.model), "train": plain(self.train), "predict": plain(self.predict), "device": self.device}

    def as_config(self) -> dict[str, Any]:
        """The settings in the config file's shape: from_config(as_config()) gives them back."""
        model = self.model
        return {
            "model": {"head": model.head, "quantization": model.quantization, "max_length": model.max_length,
                      "shares": list(model.shares), "trust_remote_code": model.trust_remote_code,
                      "lora": {"r": model.lora_r, "alpha": model.lora_alpha, "dropout": model.lora_dropout,
                               "target_modules": list(model.lora_target_modules), "layers": model.lora_layers}},
            "train": {f.name: getattr(self.train, f.name) for f in fields(self.train)},
            "predict": {f.name: getattr(self.predict, f.name) for f in fields(self.predict)},
            "device": self.device,
        }

    def training_hash(self) -> str:
        """Hash of everything that changes the trained adapter (not inference batching, nor
        checkpointing, which trades memory for time with the same result: switching it on after an
        out-of-memory error resumes the fold)."""
        data = self.as_dict()
        data.pop("predict")
        data["train"].pop("gradient_checkpointing")
        return stable_hash(data)


def model_sections(config: dict[str, Any]) -> str:
    """The config sections the model-side scripts read, as compact JSON for a rule's params."""
    return json.dumps({k: config[k] for k in ("model", "train", "predict", "device")}, sort_keys=True)
