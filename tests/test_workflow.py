"""The workflow among others: a moved checkout reruns nothing, and another project uses it as a
Snakemake module (`use rule * from arenapref`) to a validated submission."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import SNAKEMAKE, path_without_venv
from test_pipeline import planned_jobs

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
WORKFLOW_PARTS = ("Snakefile", "rules", "config", "report", "profiles", "envs")


def tiny_config(checkpoint: Path) -> dict:
    return {
        "data": {"sample": {"n_train": 40, "n_test": 6, "seed": 3}},
        "folds": {"n": 2},
        "model": {"checkpoint": str(checkpoint), "max_length": 96},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 1, "chunk_size": 16},
    }


def snakemake(directory: Path, *args: str, snakefile: Path | None = None) -> subprocess.CompletedProcess:
    # As a user types it: .venv/bin/snakemake, the environment not activated.
    env = {**os.environ, "PATH": path_without_venv()}
    command = [
        str(SNAKEMAKE),
        "--directory",
        str(directory),
        *(["-s", str(snakefile)] if snakefile else []),
        *args,
        "--cores",
        "1",
        "--resources",
        "gpu=1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def test_the_environments_snakemake_finds_the_programs_beside_it(tmp_path):
    """`.venv/bin/snakemake ...` as the README has it, with a PATH that lacks .venv/bin: the rules
    still find arenapref-make-sample-data and arenapref-preprocess (installed beside it)."""
    assert shutil.which("arenapref-preprocess", path=path_without_venv()) is None, "the test needs a PATH without it"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump({"data": {"sample": {"n_train": 30, "n_test": 4}}}))
    snakemake(tmp_path, "results/data/train.parquet", snakefile=ROOT / "Snakefile")
    assert pl.read_parquet(tmp_path / "results" / "data" / "train.parquet").height > 0
    assert "command not found" not in (tmp_path / "results" / "logs" / "preprocess.log").read_text()


def test_programs_on_path_puts_the_interpreters_folder_first_only_when_missing(tmp_path, monkeypatch):
    from arenapref.workflow import programs_on_path

    interpreter = tmp_path / "venv" / "bin" / "python"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert programs_on_path(str(interpreter)) == f"{interpreter.parent}:/usr/bin:/bin"
    assert os.environ["PATH"] == f"{interpreter.parent}:/usr/bin:/bin"
    monkeypatch.setenv("PATH", f"/stand-ins:{interpreter.parent}:/bin")  # set by hand: kept as it is
    assert programs_on_path(str(interpreter)) == f"/stand-ins:{interpreter.parent}:/bin"
    monkeypatch.delenv("PATH")
    assert programs_on_path(str(interpreter)) == str(interpreter.parent)


def test_a_moved_checkout_reruns_nothing(tmp_path, tiny_checkpoint):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for part in WORKFLOW_PARTS:
        source = ROOT / part
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, checkout / part)
    (checkout / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config(tiny_checkpoint)))
    snakemake(checkout, "results/submission.csv", snakefile=checkout / "Snakefile")
    moved = tmp_path / "elsewhere" / "renamed-checkout"
    moved.parent.mkdir()
    checkout.rename(moved)
    dry_run = snakemake(moved, "results/submission.csv", "-n", snakefile=moved / "Snakefile")
    assert planned_jobs(dry_run) == {}, dry_run.stdout[-3000:]


def test_another_project_uses_the_workflow_as_a_module(tmp_path, tiny_checkpoint):
    project = tmp_path / "my-project"
    (project / "config").mkdir(parents=True)
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config(tiny_checkpoint)))
    (project / "Snakefile").write_text(f'''configfile: "config/config.yaml"


module arenapref:
    snakefile:
        "{ROOT / "Snakefile"}"
    config:
        config


use rule * from arenapref as arenapref_*
''')
    snakemake(project, "results/submission.csv")
    from arenapref.evaluate.submission import sample_submission_ids, validate_submission

    submission = pl.read_csv(project / "results" / "submission.csv")
    validate_submission(submission, sample_submission_ids(project / "results" / "sample" / "sample_submission.csv"))
    assert submission.height == 6
    assert (project / "results" / "logs" / "train_fold0.log").exists()  # the module's logs, in the project


def test_the_catalog_test_config_is_valid():
    dry_run = snakemake(ROOT / ".test", "-n", snakefile=ROOT / "Snakefile")
    jobs = planned_jobs(dry_run)
    assert jobs.get("train_fold") == 2 and jobs.get("prepare_model") == 1


def dry_run_error(workdir: Path, config_yaml: str, *config: str) -> str:
    """The one line a dry run stops with while the workflow is built: config/config.yaml holds
    `config_yaml`, and `config` goes to --config."""
    from arenapref.workflow import SNAKEFILE

    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(config_yaml)
    env = {**os.environ, "PATH": path_without_venv()}
    command = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--directory", str(workdir), "-n"]
    command += ["--config", *config] if config else []
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "'properties'" not in output, output[-3000:]  # no schema dump
    return errors[0]


def test_a_dry_run_stops_on_an_unusable_checkpoint(tmp_path, tiny_checkpoint):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    line = dry_run_error(tmp_path, "folds:\n  n: 2\n", f"model={{checkpoint: {empty}}}")
    assert line == (
        f"error: model checkpoint {empty} is an empty folder (expected config.json, *.safetensors weights and "
        "tokenizer files) (set by model.checkpoint)"
    )
    partial = tmp_path / "partial-model"
    shutil.copytree(tiny_checkpoint, partial)
    (partial / "tokenizer.json").unlink()
    assert "no tokenizer files in" in dry_run_error(tmp_path, f"model:\n  checkpoint: {partial}\n")
    # The embedded default is built by a rule (prepare_model): a dry run does not need it yet.
    (tmp_path / "config" / "config.yaml").write_text("folds:\n  n: 2\n")
    assert planned_jobs(snakemake(tmp_path, "-n", snakefile=ROOT / "Snakefile")).get("prepare_model") == 1


def test_a_wrong_config_key_is_one_line_naming_the_key_and_the_file(tmp_path):
    line = dry_run_error(tmp_path, "model:\n  max_lenght: 512\n")
    assert line.startswith("error: invalid configuration in config/config.yaml: unknown key model.max_lenght (model ")
    line = dry_run_error(tmp_path, "folds:\n  n: 2\n", "device=gpu")
    assert line == "error: invalid configuration in --config: device: 'gpu' is not one of ['auto', 'cpu', 'cuda']"
