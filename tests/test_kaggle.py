"""The Kaggle path: credentials, the real CLI's command lines (network faked), unpacking, submit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest

from arenapref.errors import KaggleError
from arenapref.kaggle import (
    COMPETITION,
    credentials_source,
    download_command,
    require_credentials,
    submission_message,
    submit_command,
    unpack_competition_zip,
)
from arenapref.sample_data import write_sample

ROOT = Path(__file__).resolve().parents[1]
FAKE_KAGGLE_DIR = Path(__file__).resolve().parent / "fake_kaggle"


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch):
    """The fake CLI first on PATH, fake credentials, and a record of every call."""
    files = tmp_path / "served"
    write_sample(files, 30, 5, seed=4)
    log = tmp_path / "kaggle_calls.jsonl"
    log.touch()
    monkeypatch.setenv("PATH", f"{FAKE_KAGGLE_DIR}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(log))
    monkeypatch.setenv("FAKE_KAGGLE_FILES", str(files))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret-key-0123456789")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return {"files": files, "calls": lambda: [json.loads(line) for line in log.read_text().splitlines()]}


def test_credentials_from_environment_or_file(tmp_path):
    assert credentials_source({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, tmp_path) == "KAGGLE_USERNAME/KAGGLE_KEY"
    assert credentials_source({}, tmp_path) is None
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    assert credentials_source({}, tmp_path).endswith("kaggle.json")
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert credentials_source({"KAGGLE_CONFIG_DIR": str(other)}, tmp_path) is None


def test_missing_credentials_say_where_to_put_them(tmp_path):
    with pytest.raises(KaggleError, match=r"~/.kaggle/kaggle.json.*KAGGLE_USERNAME and KAGGLE_KEY"):
        require_credentials({}, tmp_path)


def test_download_script_unpacks_into_the_folder(tmp_path, fake_kaggle):
    out = tmp_path / "data" / "kaggle"
    result = subprocess.run([sys.executable, ROOT / "scripts" / "kaggle_download.py", "--out-dir", out],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        assert (out / name).read_bytes() == (fake_kaggle["files"] / name).read_bytes()
    [call] = fake_kaggle["calls"]()
    assert call[:3] == ["competitions", "download", COMPETITION]
    assert not list(out.glob(".download-*"))  # the archive's temporary folder is gone


def test_download_without_credentials_fails_before_calling_kaggle(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    result = subprocess.run([sys.executable, ROOT / "scripts" / "kaggle_download.py", "--out-dir", tmp_path / "d"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "no Kaggle credentials" in result.stderr and "Traceback" not in result.stderr
    assert fake_kaggle["calls"]() == []


def test_unpack_reads_members_by_name_and_ignores_others(tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("train.csv", "test.csv", "sample_submission.csv"):
            bundle.writestr(name, f"{name}\n")
        bundle.writestr("../escape.csv", "x")
    out = tmp_path / "out"
    unpack_competition_zip(archive, out)
    assert sorted(p.name for p in out.iterdir()) == ["sample_submission.csv", "test.csv", "train.csv"]
    assert not (tmp_path / "escape.csv").exists()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("train.csv", "x")
    with pytest.raises(KaggleError, match="missing"):
        unpack_competition_zip(archive, tmp_path / "other")


def test_submission_message_names_model_hash_and_score():
    metrics = {"run": {"model_checkpoint": "/models/Meta-Llama-3.1-8B-bnb-4bit", "config_hash": "0123456789abcdef99"},
               "overall": {"log_loss": 0.93456}}
    assert submission_message(metrics) == "arenapref Meta-Llama-3.1-8B-bnb-4bit config 0123456789ab OOF log loss 0.9346"


def write_submission_inputs(tmp_path: Path) -> dict[str, Path]:
    sample = write_sample(tmp_path / "sample", 30, 4, seed=5)["sample_submission"]
    submission = tmp_path / "submission.csv"
    pl.read_csv(sample).write_csv(submission)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"run": {"model_checkpoint": "results/model/smollm2-135m-instruct",
                                           "config_hash": "feedfacecafebeef"}, "overall": {"log_loss": 0.9}}))
    return {"sample": sample, "submission": submission, "metrics": metrics, "receipt": tmp_path / "receipt.json"}


def submit_script(paths: dict[str, Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, ROOT / "scripts" / "kaggle_submit.py", "--submission", paths["submission"],
         "--sample-submission", paths["sample"], "--metrics", paths["metrics"], "--receipt", paths["receipt"]],
        capture_output=True, text=True)


def test_submit_validates_then_calls_kaggle_with_a_traceable_message(tmp_path, fake_kaggle):
    paths = write_submission_inputs(tmp_path)
    result = submit_script(paths)
    assert result.returncode == 0, result.stderr
    [call] = fake_kaggle["calls"]()
    message = "arenapref smollm2-135m-instruct config feedfacecafe OOF log loss 0.9000"
    assert call == ["competitions", "submit", COMPETITION, "-f", str(paths["submission"]), "-m", message]
    receipt = json.loads(paths["receipt"].read_text())
    assert receipt["message"] == message
    everything = result.stdout + result.stderr + paths["receipt"].read_text()
    assert "secret-key" not in everything


def test_submit_refuses_an_invalid_submission_without_calling_kaggle(tmp_path, fake_kaggle):
    paths = write_submission_inputs(tmp_path)
    frame = pl.read_csv(paths["submission"])
    frame.with_columns(pl.lit(0.9).alias("winner_tie")).write_csv(paths["submission"])
    result = submit_script(paths)
    assert result.returncode == 2 and "sum to" in result.stderr
    assert fake_kaggle["calls"]() == [] and not paths["receipt"].exists()


def test_a_failing_kaggle_command_is_reported(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.setenv("FAKE_KAGGLE_FAIL", "403 - Forbidden: accept the competition rules first")
    paths = write_submission_inputs(tmp_path)
    result = submit_script(paths)
    assert result.returncode == 2
    assert "kaggle competitions submit` failed" in result.stderr and "403" in result.stderr


# Runs the real kaggle CLI's own parser on an argv and prints what it parsed, stopping before any
# API call: the command lines we build are checked against the installed CLI, without a network.
PARSE_ONLY = """
import argparse, json, sys
parse = argparse.ArgumentParser.parse_args
def parse_and_stop(self, args=None, namespace=None):
    parsed = parse(self, args, namespace)
    print(json.dumps({k: v for k, v in vars(parsed).items() if isinstance(v, (str, int, bool, type(None)))}))
    sys.exit(0)
argparse.ArgumentParser.parse_args = parse_and_stop
from kaggle.cli import main
sys.argv = ["kaggle", *sys.argv[1:]]
main()
"""


def parsed_by_real_cli(command: list[str], tmp_path: Path) -> dict:
    pytest.importorskip("kaggle", reason="the kaggle CLI is not installed in this environment")
    env = dict(os.environ, KAGGLE_USERNAME="someone", KAGGLE_KEY="k", HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", PARSE_ONLY, *command], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_real_cli_parses_our_download_command(tmp_path):
    parsed = parsed_by_real_cli(download_command(tmp_path / "dl"), tmp_path)
    assert parsed["competition"] == COMPETITION and parsed["path"] == str(tmp_path / "dl")


def test_the_real_cli_parses_our_submit_command(tmp_path):
    parsed = parsed_by_real_cli(submit_command(Path("results/submission.csv"), "arenapref m config c OOF 0.9"),
                                tmp_path)
    assert parsed["competition"] == COMPETITION
    assert parsed["file_name"] == "results/submission.csv"
    assert parsed["message"] == "arenapref m config c OOF 0.9"
