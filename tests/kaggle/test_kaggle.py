"""The Kaggle path: credentials, the real CLI's command lines (network faked), unpacking, and the
submission through a notebook: dataset upload, kernel push, waiting for the run, code submission."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from arenapref.data.sample_data import write_sample
from arenapref.errors import KaggleError
from arenapref.kaggle.client import (
    COMPETITION,
    credentials_source,
    dataset_create_command,
    dataset_status_command,
    dataset_version_command,
    download_command,
    kernel_push_command,
    kernel_status_command,
    kernel_submit_command,
    require_credentials,
    submission_message,
    unpack_competition_zip,
)
from arenapref.kaggle.kernel import check_kernel_folder, kaggle_input_path, write_kernel_folder
from arenapref.kaggle.notebook_submission import (
    parse_dataset_status,
    parse_kernel_status,
    parse_push_version,
    submit_via_kernel,
    wait_for_kernel,
)

ROOT = Path(__file__).resolve().parents[2]
FAKE_KAGGLE_DIR = Path(__file__).resolve().parents[1] / "fake_kaggle"


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch):
    """The fake CLI first on PATH, fake credentials, and a record of every call."""
    files = tmp_path / "served"
    write_sample(files, 30, 5, seed=4)
    log = tmp_path / "kaggle_calls.jsonl"
    log.touch()
    path = os.pathsep.join([str(FAKE_KAGGLE_DIR), str(Path(sys.executable).parent), os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
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
    result = subprocess.run(
        [sys.executable, "-m", "arenapref.commands.kaggle_download", "--out-dir", out],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        assert (out / name).read_bytes() == (fake_kaggle["files"] / name).read_bytes()
    [call] = fake_kaggle["calls"]()
    assert call[:3] == ["competitions", "download", COMPETITION]
    assert not list(out.glob(".download-*"))  # the archive's temporary folder is gone


def test_download_without_credentials_fails_before_calling_kaggle(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    result = subprocess.run(
        [sys.executable, "-m", "arenapref.commands.kaggle_download", "--out-dir", tmp_path / "d"],
        check=False,
        capture_output=True,
        text=True,
    )
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
    metrics = {
        "run": {"model_checkpoint": "/models/Meta-Llama-3.1-8B-bnb-4bit", "config_hash": "0123456789abcdef99"},
        "overall": {"log_loss": 0.93456},
    }
    assert submission_message(metrics) == "arenapref Meta-Llama-3.1-8B-bnb-4bit config 0123456789ab OOF log loss 0.9346"


DATASET_ID = "someone/arenapref-adapters"
KERNEL_ID = "someone/arenapref-submission"
BASE_MODEL = "someone/meta-llama-3-1-8b-bnb-4bit"
MESSAGE = "arenapref smollm2-135m-instruct config feedfacecafe OOF log loss 0.9000"


def write_route_inputs(tmp_path: Path) -> dict[str, Path]:
    """An export folder as export_kaggle writes it (predict.py a stub), its kernel folder, the metrics."""
    export = tmp_path / "results" / "kaggle_export"
    (export / "adapters" / "fold0").mkdir(parents=True)
    (export / "adapters" / "fold0" / "adapter_config.json").write_text("{}")
    (export / "predict.py").write_text("print('predict')\n")
    (export / "dataset-metadata.json").write_text(
        json.dumps({"title": "arenapref fold adapters", "id": DATASET_ID, "licenses": [{"name": "CC0-1.0"}]})
    )
    kernel = write_kernel_folder(tmp_path / "results" / "kaggle_kernel", KERNEL_ID, DATASET_ID, BASE_MODEL)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "run": {"model_checkpoint": "results/model/smollm2-135m-instruct", "config_hash": "feedfacecafebeef"},
                "overall": {"log_loss": 0.9},
            }
        )
    )
    return {"export": export, "kernel": kernel, "metrics": metrics, "receipt": tmp_path / "kaggle" / "receipt.json"}


def submit_script(paths: dict[str, Path], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "arenapref.commands.kaggle_submit",
            "--export-dir",
            paths["export"],
            "--kernel-dir",
            paths["kernel"],
            "--metrics",
            paths["metrics"],
            "--receipt",
            paths["receipt"],
            "--poll-seconds",
            "0",
            *extra,
        ],
        check=False,
        capture_output=True,
        text=True,
    )


def test_submit_uploads_pushes_waits_then_submits_the_kernel_version(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.setenv("FAKE_KAGGLE_DATASET_PENDING_POLLS", "1")
    monkeypatch.setenv("FAKE_KAGGLE_RUNNING_POLLS", "2")
    monkeypatch.setenv("FAKE_KAGGLE_KERNEL_VERSION", "7")
    paths = write_route_inputs(tmp_path)
    result = submit_script(paths)
    assert result.returncode == 0, result.stderr
    export, kernel = str(paths["export"]), str(paths["kernel"])
    assert fake_kaggle["calls"]() == [
        ["datasets", "status", DATASET_ID],  # absent: a 404
        ["datasets", "create", "-p", export, "--dir-mode", "zip", "-q"],
        ["datasets", "status", DATASET_ID],  # still processing
        ["datasets", "status", DATASET_ID],  # ready
        ["kernels", "push", "-p", kernel],
        ["kernels", "status", f"{KERNEL_ID}/7"],  # running
        ["kernels", "status", f"{KERNEL_ID}/7"],  # running
        ["kernels", "status", f"{KERNEL_ID}/7"],  # complete
        ["competitions", "submit", COMPETITION, "-k", KERNEL_ID, "-v", "7", "-f", "submission.csv", "-m", MESSAGE],
    ]
    receipt = json.loads(paths["receipt"].read_text())
    assert receipt["dataset_id"] == DATASET_ID and receipt["dataset_action"] == "create"
    assert receipt["kernel_id"] == KERNEL_ID and receipt["version"] == 7 and receipt["message"] == MESSAGE
    assert receipt["statuses"] == {"dataset": "ready", "kernel": "complete"}
    assert receipt["submitted"] is True and receipt["submission_ref"] == 51234567
    assert "Successfully submitted" in receipt["outputs"]["submit"]
    assert f"submitted {KERNEL_ID} version 7" in result.stdout
    everything = result.stdout + result.stderr + paths["receipt"].read_text()
    assert "secret-key" not in everything


def test_submit_adds_a_version_to_an_existing_dataset(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.setenv("FAKE_KAGGLE_DATASET_EXISTS", "1")
    paths = write_route_inputs(tmp_path)
    result = submit_script(paths)
    assert result.returncode == 0, result.stderr
    calls = fake_kaggle["calls"]()
    assert calls[1] == ["datasets", "version", "-p", str(paths["export"]), "-m", MESSAGE, "--dir-mode", "zip", "-q"]
    assert not [call for call in calls if call[:2] == ["datasets", "create"]]
    assert json.loads(paths["receipt"].read_text())["dataset_action"] == "version"


def test_submit_no_wait_pushes_and_leaves_the_submit_command(tmp_path, fake_kaggle):
    paths = write_route_inputs(tmp_path)
    result = submit_script(paths, "--no-wait")
    assert result.returncode == 0, result.stderr
    assert [call[:2] for call in fake_kaggle["calls"]()][-1] == ["kernels", "push"]
    receipt = json.loads(paths["receipt"].read_text())
    assert receipt["submitted"] is False and receipt["version"] == 3
    assert receipt["submit_command"] == ["kaggle", *kernel_submit_command(KERNEL_ID, 3, MESSAGE)]


def test_a_kernel_that_fails_is_reported_and_not_submitted(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.setenv("FAKE_KAGGLE_RUNNING_POLLS", "1")
    monkeypatch.setenv("FAKE_KAGGLE_KERNEL_ERROR", "CUDA out of memory")
    paths = write_route_inputs(tmp_path)
    result = submit_script(paths)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"kernel {KERNEL_ID}/3 ended with status error (CUDA out of memory)" in error
    assert f"kaggle kernels output {KERNEL_ID} -p" in error
    assert not [call for call in fake_kaggle["calls"]() if call[:2] == ["competitions", "submit"]]
    assert not paths["receipt"].exists()


def test_submit_without_credentials_calls_nothing(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    paths = write_route_inputs(tmp_path)
    result = submit_script(paths)
    assert result.returncode == 2 and "no Kaggle credentials" in result.stderr
    assert fake_kaggle["calls"]() == [] and not paths["receipt"].exists()


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda p: (p["export"] / "predict.py").unlink(), "no predict.py"),
        (lambda p: (p["export"] / "dataset-metadata.json").unlink(), "no dataset-metadata.json"),
        (lambda p: (p["kernel"] / "kernel-metadata.json").unlink(), "no kernel-metadata.json"),
        (
            lambda p: write_kernel_folder(p["kernel"], KERNEL_ID, "someone/other-adapters", BASE_MODEL),
            "lack the export's dataset someone/arenapref-adapters",
        ),
        (
            lambda p: write_kernel_folder(
                p["kernel"], "YOUR_KAGGLE_USERNAME/arenapref-submission", DATASET_ID, BASE_MODEL
            ),
            "set kaggle.kernel_id",
        ),
    ],
    ids=["no-predict", "no-dataset-metadata", "no-kernel-metadata", "other-dataset", "placeholder-kernel-id"],
)
def test_submit_refuses_an_incomplete_export_without_calling_kaggle(tmp_path, fake_kaggle, damage, expected):
    paths = write_route_inputs(tmp_path)
    damage(paths)
    result = submit_script(paths)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    assert fake_kaggle["calls"]() == [] and not paths["receipt"].exists()


def test_kernel_folder_checks_the_offline_competition_settings(tmp_path):
    kernel = write_kernel_folder(tmp_path / "kernel", KERNEL_ID, DATASET_ID, BASE_MODEL)
    assert check_kernel_folder(kernel, DATASET_ID)["id"] == KERNEL_ID
    metadata = json.loads((kernel / "kernel-metadata.json").read_text())
    (kernel / "kernel-metadata.json").write_text(json.dumps(dict(metadata, enable_internet=True)))
    with pytest.raises(KaggleError, match="enable_internet must be false"):
        check_kernel_folder(kernel, DATASET_ID)
    (kernel / "kernel-metadata.json").write_text(json.dumps(dict(metadata, competition_sources=[])))
    with pytest.raises(KaggleError, match="competition_sources"):
        check_kernel_folder(kernel, DATASET_ID)


def test_a_kernel_folder_inside_the_export_is_refused(tmp_path, fake_kaggle):
    paths = write_route_inputs(tmp_path)
    inside = write_kernel_folder(paths["export"] / "kernel", KERNEL_ID, DATASET_ID, BASE_MODEL)
    with pytest.raises(KaggleError, match="inside the export"):
        submit_via_kernel(paths["export"], inside, MESSAGE, poll_seconds=0)
    assert fake_kaggle["calls"]() == []


def test_a_failing_kaggle_command_is_reported(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.setenv("FAKE_KAGGLE_FAIL", "403 - Forbidden: accept the competition rules first")
    paths = write_route_inputs(tmp_path)
    result = submit_script(paths)
    assert result.returncode == 2
    assert "kaggle datasets status someone/arenapref-adapters` failed" in result.stderr and "403" in result.stderr
    assert len(fake_kaggle["calls"]()) == 1


def test_credentials_in_the_cli_output_are_redacted(tmp_path, fake_kaggle, monkeypatch):
    monkeypatch.setenv("FAKE_KAGGLE_FAIL", "401 - bad key secret-key-0123456789")
    paths = write_route_inputs(tmp_path)
    result = submit_script(paths)
    assert result.returncode == 2 and "401 - bad key ***" in result.stderr
    assert "secret-key" not in result.stdout + result.stderr


def test_wait_for_kernel_polls_until_complete_and_times_out_with_the_way_on(fake_kaggle, monkeypatch):
    monkeypatch.setenv("FAKE_KAGGLE_RUNNING_POLLS", "2")
    sleeps = []
    assert wait_for_kernel(KERNEL_ID, poll_seconds=5, sleep=sleeps.append) == "complete"
    assert sleeps == [5, 5] and fake_kaggle["calls"]()[-1] == ["kernels", "status", KERNEL_ID]
    monkeypatch.setenv("FAKE_KAGGLE_RUNNING_POLLS", "1000")
    now = [0.0]
    with pytest.raises(KaggleError, match=rf"still running after 1.0 h.*-k {KERNEL_ID} -v 4 -f submission.csv"):
        wait_for_kernel(
            KERNEL_ID,
            poll_seconds=600,
            timeout_seconds=3600,
            version=4,
            sleep=lambda s: now.__setitem__(0, now[0] + s),
            clock=lambda: now[0],
        )


def test_push_output_without_a_version_or_with_dropped_inputs_is_an_error():
    pushed = f"Kernel version 12 successfully pushed.  Please check progress at https://www.kaggle.com/code/{KERNEL_ID}"
    assert parse_push_version(pushed) == 12
    with pytest.raises(KaggleError, match="refused the kernel: Notebook not found"):
        parse_push_version("Kernel push error: Notebook not found")
    with pytest.raises(KaggleError, match=r"dropped the kernel's inputs \(version 12 runs without them\): dataset"):
        parse_push_version(
            "The following are not valid dataset sources and could not be added to the kernel: "
            f"['{DATASET_ID}']\n{pushed}"
        )
    with pytest.raises(KaggleError, match="no version number"):
        parse_push_version("Kernel version successfully pushed.  Please check progress at https://x")


def test_kernel_status_reads_the_enum_name_and_the_failure_message():
    assert parse_kernel_status(f'{KERNEL_ID} has status "KernelWorkerStatus.RUNNING"') == ("running", None)
    assert parse_kernel_status(f'{KERNEL_ID} has status "complete"') == ("complete", None)
    output = f'{KERNEL_ID}/3 has status "KernelWorkerStatus.ERROR"\nFailure message: "out of\nmemory"'
    assert parse_kernel_status(output) == ("error", "out of memory")
    with pytest.raises(KaggleError, match="no status"):
        parse_kernel_status("Warning: something else")


# --- The notebook --------------------------------------------------------------------------------


def test_kaggle_input_path_of_datasets_models_and_paths():
    assert kaggle_input_path("someone/meta-llama-3-1-8b-bnb-4bit") == "/kaggle/input/meta-llama-3-1-8b-bnb-4bit"
    assert (
        kaggle_input_path("metaresearch/llama-3.1/transformers/8b-instruct/2")
        == "/kaggle/input/llama-3.1/transformers/8b-instruct/2"
    )
    assert kaggle_input_path("/kaggle/input/my-model/weights/") == "/kaggle/input/my-model/weights"
    for bad in (
        "llama",
        "a/b/c",
        "o/m/f/v/latest",
        "o/m/f/v/1/2",
        "/models/llama",
        "/kaggle/input/../etc",
        "someone/",
        "a b/c",
    ):
        with pytest.raises(KaggleError) as caught:
            kaggle_input_path(bad)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "base_model, datasets, models",
    [
        (BASE_MODEL, [DATASET_ID, BASE_MODEL], []),
        ("metaresearch/llama-3.1/transformers/8b/1", [DATASET_ID], ["metaresearch/llama-3.1/transformers/8b/1"]),
        ("/kaggle/input/attached-by-hand", [DATASET_ID], []),
    ],
)
def test_kernel_metadata_runs_offline_on_a_gpu_with_its_inputs(tmp_path, base_model, datasets, models):
    kernel = write_kernel_folder(tmp_path / "kernel", KERNEL_ID, DATASET_ID, base_model)
    metadata = json.loads((kernel / "kernel-metadata.json").read_text())
    assert metadata["enable_internet"] is False and metadata["enable_gpu"] is True
    assert metadata["machine_shape"] == "NvidiaTeslaT4" and metadata["is_private"] is True
    assert metadata["competition_sources"] == [COMPETITION] and metadata["kernel_sources"] == []
    assert metadata["dataset_sources"] == datasets and metadata["model_sources"] == models
    assert metadata["id"] == KERNEL_ID and metadata["code_file"] == "run.py" and (kernel / "run.py").is_file()
    assert (metadata["language"], metadata["kernel_type"]) == ("python", "script")


def test_kernel_handles_and_title_are_checked(tmp_path):
    with pytest.raises(KaggleError, match="kernel id"):
        write_kernel_folder(tmp_path / "k", "someone/abc", DATASET_ID, BASE_MODEL)  # slugs have 5+ characters
    with pytest.raises(KaggleError, match="dataset id"):
        write_kernel_folder(tmp_path / "k", KERNEL_ID, "arenapref-adapters", BASE_MODEL)
    with pytest.raises(KaggleError, match="makes the slug 'my-notebook'"):
        write_kernel_folder(tmp_path / "k", KERNEL_ID, DATASET_ID, BASE_MODEL, title="My Notebook")
    with pytest.raises(KaggleError, match="set by run.py itself"):
        write_kernel_folder(tmp_path / "k", KERNEL_ID, DATASET_ID, BASE_MODEL, predict_args=["--out=x.csv"])
    assert not (tmp_path / "k").exists()
    kernel = write_kernel_folder(tmp_path / "k", KERNEL_ID, DATASET_ID, BASE_MODEL, title="Arenapref Submission")
    assert json.loads((kernel / "kernel-metadata.json").read_text())["title"] == "Arenapref Submission"


RECORDING_PREDICT = """
import json, pathlib, sys
out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
out.write_text("id,winner_model_a,winner_model_b,winner_tie\\n7,0.5,0.3,0.2\\n")
pathlib.Path(__file__).with_name("argv.json").write_text(json.dumps(sys.argv[1:]))
"""


def fake_kaggle_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """/kaggle/input and /kaggle/working as the notebook sees them, with a predict.py that records its argv."""
    inputs, working = tmp_path / "input", tmp_path / "working"
    (inputs / "arenapref-adapters").mkdir(parents=True)
    (inputs / "arenapref-adapters" / "predict.py").write_text(RECORDING_PREDICT)
    (inputs / "llama-3.1" / "transformers" / "8b" / "1").mkdir(parents=True)
    (inputs / COMPETITION).mkdir()
    (inputs / COMPETITION / "test.csv").write_text("id,prompt,response_a,response_b\n7,a,b,c\n")
    return inputs, working


def run_notebook(kernel: Path, inputs: Path, working: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, KAGGLE_INPUT_ROOT=str(inputs), KAGGLE_WORKING=str(working))
    return subprocess.run(
        [sys.executable, kernel / "run.py"], check=False, capture_output=True, text=True, env=env, timeout=120
    )


def test_run_py_calls_predict_with_the_inputs_and_installs_wheels_offline(tmp_path):
    model = "metaresearch/llama-3.1/transformers/8b/1"
    kernel = write_kernel_folder(tmp_path / "kernel", KERNEL_ID, DATASET_ID, model, predict_args=["--device", "cuda"])
    source = (kernel / "run.py").read_text()
    compile(source, "run.py", "exec")
    assert '"/kaggle/input"' in source.replace("'", '"') and '"/kaggle/working"' in source.replace("'", '"')
    inputs, working = fake_kaggle_inputs(tmp_path)
    wheels = inputs / "arenapref-adapters" / "wheels"
    wheels.mkdir()
    (wheels / "requirements.txt").write_text("# nothing to install: pip runs offline and succeeds\n")
    result = run_notebook(kernel, inputs, working)
    assert result.returncode == 0, result.stderr
    argv = json.loads((inputs / "arenapref-adapters" / "argv.json").read_text())
    assert argv == [
        "--base-model",
        str(inputs / "llama-3.1/transformers/8b/1"),
        "--test",
        str(inputs / COMPETITION / "test.csv"),
        "--out",
        str(working / "submission.csv"),
        "--device",
        "cuda",
    ]
    assert "id,winner_model_a,winner_model_b,winner_tie" in result.stdout and "7,0.5,0.3,0.2" in result.stdout
    (wheels / "requirements.txt").write_text("arenapref-no-such-package==0\n")  # not among the wheels: pip fails
    assert run_notebook(kernel, inputs, working).returncode != 0


def test_run_py_names_a_missing_input(tmp_path):
    kernel = write_kernel_folder(tmp_path / "kernel", KERNEL_ID, DATASET_ID, BASE_MODEL)
    inputs, working = fake_kaggle_inputs(tmp_path)
    result = run_notebook(kernel, inputs, working)
    assert result.returncode == 1
    assert "the base model not found at" in result.stderr and "meta-llama-3-1-8b-bnb-4bit" in result.stderr
    assert "attached inputs: ['arenapref-adapters', 'llama-3.1', 'lmsys-chatbot-arena']" in result.stderr


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
    result = subprocess.run(
        [sys.executable, "-c", PARSE_ONLY, *command], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_real_cli_parses_our_download_command(tmp_path):
    parsed = parsed_by_real_cli(download_command(tmp_path / "dl"), tmp_path)
    assert parsed["competition"] == COMPETITION and parsed["path"] == str(tmp_path / "dl")


@pytest.mark.parametrize(
    "command, expected",
    [
        (dataset_status_command(DATASET_ID), {"dataset": DATASET_ID}),
        (
            dataset_create_command(Path("results/kaggle_export")),
            {"folder": "results/kaggle_export", "dir_mode": "zip", "quiet": True, "public": False},
        ),
        (
            dataset_version_command(Path("results/kaggle_export"), MESSAGE),
            {"folder": "results/kaggle_export", "version_notes": MESSAGE, "dir_mode": "zip", "quiet": True},
        ),
        (kernel_push_command(Path("results/kaggle_kernel")), {"folder": "results/kaggle_kernel", "no_run": False}),
        (kernel_status_command(KERNEL_ID, 3), {"kernel": f"{KERNEL_ID}/3"}),
        (
            kernel_submit_command(KERNEL_ID, 3, MESSAGE),
            {
                "competition": COMPETITION,
                "kernel": KERNEL_ID,
                "version": "3",
                "file_name": "submission.csv",
                "message": MESSAGE,
            },
        ),
    ],
    ids=["datasets-status", "datasets-create", "datasets-version", "kernels-push", "kernels-status", "kernel-submit"],
)
def test_the_real_cli_parses_our_commands(tmp_path, command, expected):
    parsed = parsed_by_real_cli(command, tmp_path)
    assert {key: parsed.get(key) for key in expected} == expected


# Runs the real kaggle CLI end to end with its API client replaced by canned answers: what it sends for our
# kernel folder and command lines, and what it prints, which our parsers then read. Never reaches a network.
FAKE_TRANSPORT = """
import json, os, sys
from types import SimpleNamespace

import requests
from kaggle.api.kaggle_api_extended import KaggleApi
from kagglesdk.competitions.types.competition_api_service import ApiCreateCodeSubmissionResponse
from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetStatusResponse
from kagglesdk.datasets.types.dataset_enums import DatabundleVersionStatus
from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusResponse, ApiSaveKernelResponse
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

sent = []


def save_kernel(request):
    response = ApiSaveKernelResponse()
    response.version_number = 7
    response.url = "https://www.kaggle.com/code/" + request.slug
    return response


def get_kernel_session_status(request):
    response = ApiGetKernelSessionStatusResponse()
    response.status = KernelWorkerStatus[os.environ["ANSWER_KERNEL_STATUS"]]
    response.failure_message = os.environ.get("ANSWER_FAILURE")
    return response


def get_dataset_status(request):
    if os.environ.get("ANSWER_DATASET_MISSING"):
        response = requests.Response()
        response.status_code = 404
        raise requests.exceptions.HTTPError("404 Client Error: Not Found for url: https://api.kaggle.com/v1/x",
                                            response=response)
    response = ApiGetDatasetStatusResponse()
    response.status = DatabundleVersionStatus.READY
    return response


def create_code_submission(request):
    response = ApiCreateCodeSubmissionResponse()
    response.message = "Your submission was successfully saved"
    return response


class Service:
    def __getattr__(self, name):
        answer = globals().get(name)
        if answer is None:
            raise RuntimeError(f"no network in tests: {name}")

        def call(request):
            sent.append({"call": name, "request": request.to_field_map(ignore_defaults=False)})
            return answer(request)
        return call


class Client:
    kernels = SimpleNamespace(kernels_api_client=Service())
    datasets = SimpleNamespace(dataset_api_client=Service())
    competitions = SimpleNamespace(competition_api_client=Service())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


KaggleApi.build_kaggle_client = lambda self: Client()
from kaggle.cli import main
sys.argv = ["kaggle", *sys.argv[1:]]
try:
    main()
finally:
    with open(os.environ["SENT_LOG"], "w") as out:
        json.dump(sent, out, default=str)
"""


def real_cli_with_canned_answers(command: list[str], tmp_path: Path, **answers: str) -> tuple[int, str, list]:
    pytest.importorskip("kaggle", reason="the kaggle CLI is not installed in this environment")
    sent_log = tmp_path / "sent.json"
    env = dict(
        os.environ,
        KAGGLE_USERNAME="someone",
        KAGGLE_KEY="k",
        HOME=str(tmp_path),
        SENT_LOG=str(sent_log),
        **{"ANSWER_KERNEL_STATUS": "COMPLETE", **answers},
    )
    result = subprocess.run(
        [sys.executable, "-c", FAKE_TRANSPORT, *command],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr, json.loads(sent_log.read_text())


def test_the_real_cli_sends_our_kernel_as_an_offline_gpu_notebook(tmp_path):
    kernel = write_kernel_folder(tmp_path / "kernel", KERNEL_ID, DATASET_ID, BASE_MODEL)
    code, output, [sent] = real_cli_with_canned_answers(kernel_push_command(kernel), tmp_path)
    assert code == 0, output
    assert parse_push_version(output) == 7
    request = sent["request"]
    assert sent["call"] == "save_kernel" and request["slug"] == KERNEL_ID
    assert request["enable_internet"] is False and request["enable_gpu"] is True and request["is_private"] is True
    assert request["machine_shape"] == "NvidiaTeslaT4" and request["kernel_type"] == "script"
    assert request["dataset_data_sources"] == [DATASET_ID, BASE_MODEL]
    assert request["competition_data_sources"] == [COMPETITION]
    assert request["text"] == (kernel / "run.py").read_text()
    assert "does not resolve to the specified id" not in output  # the title makes the kernel's slug


def test_the_real_cli_status_output_is_what_we_parse(tmp_path):
    code, output, [sent] = real_cli_with_canned_answers(
        kernel_status_command(KERNEL_ID, 7), tmp_path, ANSWER_KERNEL_STATUS="RUNNING"
    )
    assert code == 0 and parse_kernel_status(output) == ("running", None)
    assert sent["request"]["kernel_slug"] == "arenapref-submission" and sent["request"]["version_label"] == "v7"
    code, output, _ = real_cli_with_canned_answers(
        kernel_status_command(KERNEL_ID, 7), tmp_path, ANSWER_KERNEL_STATUS="ERROR", ANSWER_FAILURE="CUDA out of memory"
    )
    assert code == 0 and parse_kernel_status(output) == ("error", "CUDA out of memory")
    code, output, _ = real_cli_with_canned_answers(dataset_status_command(DATASET_ID), tmp_path)
    assert code == 0 and parse_dataset_status(output) == "ready"
    code, output, _ = real_cli_with_canned_answers(
        dataset_status_command(DATASET_ID), tmp_path, ANSWER_DATASET_MISSING="1"
    )
    assert code == 1 and "The resource was not found" in output  # what dataset_exists reads as absent


def test_the_real_cli_submits_our_kernel_version(tmp_path):
    code, output, [sent] = real_cli_with_canned_answers(kernel_submit_command(KERNEL_ID, 7, MESSAGE), tmp_path)
    assert code == 0, output
    assert sent["call"] == "create_code_submission"
    assert sent["request"] == {
        "competition_name": COMPETITION,
        "kernel_owner": "someone",
        "kernel_slug": "arenapref-submission",
        "kernel_version": 7,
        "file_name": "submission.csv",
        "submission_description": MESSAGE,
    }
