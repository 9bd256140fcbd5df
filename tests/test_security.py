"""Nothing in the code runs data or unpickles files it did not write; settings are validated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arenapref.config import RunConfig, validate_config
from arenapref.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CODE = sorted([*ROOT.glob("src/**/*.py"), *ROOT.glob("scripts/*.py")])


@pytest.mark.parametrize(
    "pattern, why",
    [
        (r"(?<![\w.])eval\(", "eval runs code"),
        (r"(?<![\w.])exec\(", "exec runs code"),
        (r"\bimport pickle\b|\bpickle\.load", "unpickling runs code"),
        (r"torch\.load\((?![^)]*weights_only=True)", "torch.load without weights_only unpickles"),
        (r"trust_remote_code=True", "remote code only when the config says so"),
    ],
)
def test_no_code_execution_paths(pattern, why):
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in CODE
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, f"{why}: {offenders}"


def test_remote_code_is_off_by_default():
    assert RunConfig.from_config({}).model.trust_remote_code is False


@pytest.mark.parametrize(
    "config, message",
    [
        ({"model": {"quantization": "fp4"}}, "model.quantization: 'fp4' is not one of"),
        ({"model": {"max_length": 8}}, "model.max_length: 8 is less than the minimum"),
        ({"train": {"learning_rate": -1}}, "train.learning_rate"),
        ({"folds": {"n": 1}}, "folds.n: 1 is less than the minimum of 2"),
        ({"data": {"train": "train.parquet"}}, "data.train: 'train.parquet' does not match"),
        ({"model": {"lora": {"rank": 4}}}, "model.lora: Additional properties are not allowed ('rank'"),
        ({"device": "tpu"}, "device: 'tpu' is not one of"),
    ],
)
def test_bad_settings_are_named(config, message):
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert message in str(err.value)
