"""The Kaggle side: download the competition files and submit through a notebook, with the real `kaggle` CLI.

The competition scores notebook (kernel) submissions only, so a submission is: upload the export folder
as a dataset (create it, or a new version), wait until Kaggle has processed it, push the notebook
(arenapref.kernel), wait for its run, then `competitions submit -k KERNEL -v VERSION`.

The CLI does the network work; this module checks what it can beforehand (credentials, the folders),
builds the command lines, reads the CLI's printed answers (kaggle 2.2.5 prints several failures with
exit status 0), and keeps credentials out of logs, messages and receipts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from arenapref.errors import KaggleError
from arenapref.io import atomic_path, dir_sha256
from arenapref.kernel import (
    COMPETITION,
    DATASET_HANDLE,
    PLACEHOLDER_OWNER,
    SUBMISSION_FILE,
    check_kernel_folder,
    check_kernel_id,
)

log = logging.getLogger(__name__)

COMPETITION_FILES = ("train.csv", "test.csv", "sample_submission.csv")


def credentials_source(env: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """Where the kaggle CLI will find credentials, or None when it will find none."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    config_dir = Path(env["KAGGLE_CONFIG_DIR"]) if env.get("KAGGLE_CONFIG_DIR") else (home or Path.home()) / ".kaggle"
    for name in ("kaggle.json", "access_token"):
        if (config_dir / name).is_file():
            return str(config_dir / name)
    return None


def require_credentials(env: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    source = credentials_source(env, home)
    if source is None:
        raise KaggleError(
            "no Kaggle credentials: put the API token from kaggle.com > Settings > API in "
            "~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY; "
            "you must also have accepted the competition rules on its page"
        )
    return source


def kaggle_executable() -> str:
    path = shutil.which("kaggle")
    if path is None:
        raise KaggleError("the kaggle CLI is not on PATH (`make` installs it into .venv)")
    return path


def _secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """The credential values the CLI may see, so that none of them reaches a message, a log or a receipt."""
    env = os.environ if env is None else env
    found = [env.get("KAGGLE_KEY", ""), env.get("KAGGLE_API_TOKEN", "")]
    config_dir = Path(env["KAGGLE_CONFIG_DIR"]) if env.get("KAGGLE_CONFIG_DIR") else Path.home() / ".kaggle"
    try:
        found.append(str(json.loads((config_dir / "kaggle.json").read_text(encoding="utf-8")).get("key", "")))
    except (OSError, ValueError, AttributeError):
        pass
    try:
        found.append((config_dir / "access_token").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    return [secret for secret in found if len(secret) >= 4]


def redact(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def _one_line(text: str, limit: int = 800) -> str:
    """The tail of the CLI's output on one line, for a one-line error."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def call_kaggle(args: Sequence[str]) -> tuple[int, str]:
    """Run `kaggle ARGS`; return its exit status and its output (stdout then stderr), credentials redacted."""
    command = [kaggle_executable(), *args]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    return result.returncode, redact((result.stdout + result.stderr).strip())


def run_kaggle(args: Sequence[str]) -> str:
    """Run `kaggle ARGS`; return its output, or raise with the command and its output."""
    code, output = call_kaggle(args)
    if code != 0:
        raise KaggleError(f"`kaggle {' '.join(args[:2])}` failed (exit {code}): {_one_line(output)}")
    return output


# Command lines, checked against the installed CLI's own parser in the tests. The competition is
# positional: kaggle 2.x still parses `-c` but hides it as deprecated.
def download_command(dest: Path) -> list[str]:
    return ["competitions", "download", COMPETITION, "-p", str(dest)]


def dataset_status_command(dataset_id: str) -> list[str]:
    return ["datasets", "status", dataset_id]


# --dir-mode zip: the export's folders (arenapref/, adapters/, tokenizer/, wheels/) are uploaded as
# archives that Kaggle unpacks; the default, skip, would leave them out. -q: no upload progress bars.
def dataset_create_command(folder: Path) -> list[str]:
    return ["datasets", "create", "-p", str(folder), "--dir-mode", "zip", "-q"]


def dataset_version_command(folder: Path, message: str) -> list[str]:
    return ["datasets", "version", "-p", str(folder), "-m", message, "--dir-mode", "zip", "-q"]


def kernel_push_command(folder: Path) -> list[str]:
    return ["kernels", "push", "-p", str(folder)]


def kernel_status_command(kernel_id: str, version: int | None = None) -> list[str]:
    """`kernels status OWNER/SLUG/VERSION` asks about that version's run, not whichever run is latest."""
    return ["kernels", "status", kernel_id if version is None else f"{kernel_id}/{version}"]


def kernel_submit_command(kernel_id: str, version: int, message: str, file_name: str = SUBMISSION_FILE) -> list[str]:
    """A code submission: Kaggle reruns that notebook version on the hidden test set and scores `file_name`."""
    return ["competitions", "submit", COMPETITION, "-k", kernel_id, "-v", str(version), "-f", file_name, "-m", message]


def kernel_log_hint(kernel_id: str) -> str:
    return f"read its log with `kaggle kernels output {kernel_id} -p results/kaggle/kernel_output`"


def unpack_competition_zip(archive: Path, out_dir: Path) -> dict[str, Path]:
    """Extract the three competition CSVs, each atomically; refuse an archive without them.

    Members are read by exact name, never extracted by the paths stored in the archive, so a
    crafted archive cannot write outside `out_dir`.
    """
    paths = {}
    with zipfile.ZipFile(archive) as bundle:
        names = set(bundle.namelist())
        missing = [name for name in COMPETITION_FILES if name not in names]
        if missing:
            raise KaggleError(f"{archive}: missing {missing} (has {sorted(names)[:10]})")
        for name in COMPETITION_FILES:
            target = out_dir / name
            with bundle.open(name) as source, atomic_path(target) as tmp, open(tmp, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            paths[name] = target
    return paths


def download_competition(out_dir: str | Path) -> dict[str, Path]:
    """Download the competition archive with the kaggle CLI and unpack its CSVs into `out_dir`."""
    require_credentials()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".download-") as tmp:
        run_kaggle(download_command(Path(tmp)))
        archives = sorted(Path(tmp).glob("*.zip"))
        if not archives:
            raise KaggleError(f"`kaggle competitions download` left no zip archive in {tmp}")
        return unpack_competition_zip(archives[0], out)


def submission_message(metrics: Mapping) -> str:
    """Names the model, the config hash and the OOF log loss, so the leaderboard entry is traceable."""
    run = metrics.get("run", {})
    model = Path(str(run.get("model_checkpoint") or "unknown-model")).name
    overall = metrics.get("overall", {})
    log_loss = overall.get("log_loss")
    score = f"{log_loss:.4f}" if isinstance(log_loss, int | float) else "n/a"
    return f"arenapref {model} config {str(run.get('config_hash', 'n/a'))[:12]} OOF log loss {score}"


# --- Submitting through a notebook -------------------------------------------------------------

DATASET_READY = "ready"
DATASET_FAILED = ("failed", "deleted")
KERNEL_COMPLETE = "complete"
KERNEL_FAILED = ("error", "cancel_requested", "cancel_acknowledged")
# A poll that fails this many times in a row ends the wait; fewer are network blips in a wait of hours.
MAX_POLL_FAILURES = 5


def check_export_folder(export_dir: Path) -> str:
    """The export's dataset id, once the folder has what the notebook and `datasets create` need."""
    export_dir = Path(export_dir)
    meta_file = export_dir / "dataset-metadata.json"
    if not meta_file.is_file():
        raise KaggleError(f"{export_dir}: no dataset-metadata.json; run `snakemake export_kaggle` first")
    if not (export_dir / "predict.py").is_file():
        raise KaggleError(f"{export_dir}: no predict.py; rerun `snakemake export_kaggle`")
    try:
        dataset_id = str(json.loads(meta_file.read_text(encoding="utf-8")).get("id", ""))
    except (json.JSONDecodeError, AttributeError) as err:
        raise KaggleError(f"{meta_file}: not a JSON object ({err})") from None
    if DATASET_HANDLE.match(dataset_id) is None:
        raise KaggleError(f"{meta_file}: id {dataset_id!r} is not owner/slug")
    if dataset_id.startswith(PLACEHOLDER_OWNER + "/"):
        raise KaggleError(f"{meta_file}: the dataset id is still {dataset_id!r}; set kaggle.dataset_id in the config")
    return dataset_id


def _is_not_found(output: str) -> bool:
    # The CLI prints the HTTP error ("404 Client Error: Not Found for url: ...") and, for a 404, the hint
    # "The resource was not found. ..." (kaggle.api.kaggle_api_extended.format_http_error).
    return re.search(r"\b404\b", output) is not None or "not found" in output.lower()


def dataset_exists(dataset_id: str) -> bool:
    """Whether `dataset_id` exists for these credentials: `datasets status` answers, or fails with a 404.

    This is the check `datasets create` itself makes before refusing a slug in use. Any other failure
    (a 403 on someone else's private dataset, a 401, a server error) is raised, not read as absent.
    """
    code, output = call_kaggle(dataset_status_command(dataset_id))
    if code == 0:
        return True
    if _is_not_found(output):
        return False
    raise KaggleError(f"`kaggle datasets status {dataset_id}` failed (exit {code}): {_one_line(output)}")


def upload_dataset(folder: Path, message: str) -> dict:
    """Create the export's dataset, or add a version when it exists; return what was done and the CLI's output.

    The CLI reports a refused upload ("Dataset creation error: ...") with exit status 0, so its output is read.
    """
    dataset_id = check_export_folder(folder)
    exists = dataset_exists(dataset_id)
    action = "version" if exists else "create"
    command = dataset_version_command(folder, message) if exists else dataset_create_command(folder)
    output = run_kaggle(command)
    refused = re.search(r"Dataset (?:version )?creation error: ?(.*)", output)
    if refused:
        raise KaggleError(f"`kaggle datasets {action}` refused {dataset_id}: {_one_line(refused.group(1))}")
    log.info("datasets %s %s: %s", action, dataset_id, _one_line(output, 200))
    return {"dataset_id": dataset_id, "action": action, "output": output}


def parse_dataset_status(output: str) -> str:
    """`datasets status` prints the status alone (e.g. "ready"), after any warning lines."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1].lower() if lines else ""


def _poll(
    args: Sequence[str],
    read: Callable[[str], str | None],
    on_timeout: Callable[[], str],
    poll_seconds: float,
    timeout_seconds: float,
    sleep: Callable[[float], object],
    clock: Callable[[], float],
    not_yet: Callable[[str], bool] = lambda output: False,
) -> str:
    """Run `kaggle ARGS` every `poll_seconds` until `read(output)` returns a final status (it raises for
    a failed one and returns None to go on). A few failed calls in a row are network blips; more, or
    the deadline, raise. `not_yet(output)` marks a failed call that only means "not there yet"."""
    deadline = clock() + timeout_seconds
    failures = 0
    while True:
        code, output = call_kaggle(args)
        if code == 0:
            failures = 0
            final = read(output)
            if final is not None:
                return final
        elif not not_yet(output):
            failures += 1
            if failures >= MAX_POLL_FAILURES:
                raise KaggleError(
                    f"`kaggle {' '.join(args)}` failed {failures} times in a row (exit {code}): {_one_line(output)}"
                )
            log.warning("`kaggle %s` failed (exit %d); polling again", " ".join(args), code)
        if clock() >= deadline:
            raise KaggleError(on_timeout())
        sleep(poll_seconds)


def wait_for_dataset(
    dataset_id: str,
    poll_seconds: float = 30,
    timeout_seconds: float = 3600,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll `datasets status` until Kaggle has processed the upload: a notebook pushed before that runs on
    the previous version's files (or none)."""
    last = {"status": "unknown"}

    def read(output: str) -> str | None:
        last["status"] = status = parse_dataset_status(output)
        if status in DATASET_FAILED:
            raise KaggleError(
                f"Kaggle could not process dataset {dataset_id}: status {status}; "
                f"see https://www.kaggle.com/datasets/{dataset_id}"
            )
        return status if status == DATASET_READY else None

    return _poll(
        dataset_status_command(dataset_id),
        read,
        lambda _: (
            f"dataset {dataset_id} still {last['status']} after {timeout_seconds / 60:.0f} min; "
            "rerun once `kaggle datasets status` says ready"
        ),
        poll_seconds,
        timeout_seconds,
        sleep,
        clock,
        not_yet=_is_not_found,  # right after `datasets create`, a 404 means not registered yet
    )


def parse_push_version(output: str) -> int:
    """The version `kernels push` made, from its line "Kernel version N successfully pushed.  Please check ...".

    The CLI reports a refused push ("Kernel push error: ...") and sources it dropped with exit status 0.
    """
    refused = re.search(r"Kernel push error: ?(.*)", output)
    if refused:
        raise KaggleError(f"`kaggle kernels push` refused the kernel: {_one_line(refused.group(1))}")
    pushed = re.search(r"Kernel version (\d+) successfully pushed", output)
    dropped = re.findall(
        r"The following are not valid (\w+) sources and could not be added to the kernel: (.*)", output
    )
    if dropped:
        # Without its inputs the run fails or predicts from nothing; not worth waiting hours for.
        which = "; ".join(f"{kind} {names}" for kind, names in dropped)
        version = f" (version {pushed.group(1)} runs without them)" if pushed else ""
        raise KaggleError(
            f"Kaggle dropped the kernel's inputs{version}: {_one_line(which, 300)}; "
            "check the ids in kernel-metadata.json and that you can open them on kaggle.com"
        )
    if pushed is None:
        raise KaggleError(
            f"no version number in `kaggle kernels push`'s output ({_one_line(output, 300)}); "
            "find it on the notebook's page and submit with "
            "`kaggle competitions submit lmsys-chatbot-arena -k ID -v VERSION -f submission.csv -m MSG`"
        )
    return int(pushed.group(1))


def push_kernel(folder: Path) -> int:
    """Push the notebook (a new version, which Kaggle starts running) and return its version number."""
    output = run_kaggle(kernel_push_command(folder))
    version = parse_push_version(output)
    log.info("kernels push %s: version %d", folder, version)
    return version


def parse_kernel_status(output: str) -> tuple[str, str | None]:
    """The status and failure message from `kernels status`.

    kaggle 2.2.5 prints `ID has status "KernelWorkerStatus.RUNNING"` (the enum's name), then
    `Failure message: "..."` when there is one; older CLIs printed the bare name ("running").
    """
    found = re.search(r'has status "([^"]*)"', output)
    if found is None:
        raise KaggleError(f"no status in `kaggle kernels status`'s output: {_one_line(output, 300)}")
    status = found.group(1).rsplit(".", 1)[-1].strip().lower()
    failure = re.search(r'Failure message: "(.*)"', output, re.DOTALL)
    return status, (_one_line(failure.group(1), 300) if failure else None)


def wait_for_kernel(
    kernel_id: str,
    poll_seconds: float = 30,
    timeout_seconds: float = 9.5 * 3600,
    sleep: Callable[[float], object] = time.sleep,
    *,
    version: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll `kernels status` (of `version` when given) until the run completes; return the final status.

    An error or a cancellation raises with the status and where to read the log. The default timeout is
    a little over the competition's 9-hour notebook limit.
    """
    target = kernel_id if version is None else f"{kernel_id}/{version}"
    last = {"status": "unknown"}

    def read(output: str) -> str | None:
        status, failure = parse_kernel_status(output)
        if status != last["status"]:
            log.info("kernel %s: %s", target, status)
        last["status"] = status
        if status in KERNEL_FAILED:
            reason = f" ({failure})" if failure else ""
            raise KaggleError(f"kernel {target} ended with status {status}{reason}; {kernel_log_hint(kernel_id)}")
        return status if status == KERNEL_COMPLETE else None

    def on_timeout() -> str:
        resume = (
            f"`kaggle competitions submit {COMPETITION} -k {kernel_id} -v {version} -f {SUBMISSION_FILE} -m MESSAGE`"
            if version is not None
            else "`kaggle competitions submit`"
        )
        return (
            f"kernel {target} still {last['status']} after {timeout_seconds / 3600:.1f} h; it keeps running "
            f"on Kaggle: once `kaggle kernels status {target}` says complete, submit with {resume}"
        )

    return _poll(
        kernel_status_command(kernel_id, version), read, on_timeout, poll_seconds, timeout_seconds, sleep, clock
    )


def submit_via_kernel(
    export_dir: Path,
    kernel_dir: Path,
    message: str,
    *,
    poll_seconds: float = 30,
    timeout_seconds: float = 9.5 * 3600,
    dataset_timeout_seconds: float = 3600,
    wait: bool = True,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """The whole route: upload the export, push the notebook, wait for its run, submit that version.

    With wait=False it stops after the push (nothing is submitted; the receipt has the submit command).
    Returns a receipt: what was uploaded, pushed and submitted, the statuses seen and the CLI's outputs.
    """
    export_dir, kernel_dir = Path(export_dir), Path(kernel_dir)
    dataset_id = check_export_folder(export_dir)
    if kernel_dir.resolve().is_relative_to(export_dir.resolve()):
        raise KaggleError(
            f"the kernel folder {kernel_dir} is inside the export {export_dir}, which is uploaded "
            "as the dataset; keep it outside (results/kaggle_kernel)"
        )
    kernel_id = check_kernel_id(str(check_kernel_folder(kernel_dir, dataset_id)["id"]))
    require_credentials()
    receipt: dict = {
        "competition": COMPETITION,
        "dataset_id": dataset_id,
        "export_sha256": dir_sha256(export_dir),
        "kernel_id": kernel_id,
        "version": None,
        "message": message,
        "statuses": {},
        "submitted": False,
        "outputs": {},
    }
    upload = upload_dataset(export_dir, message)
    receipt["dataset_action"] = upload["action"]
    receipt["outputs"]["dataset"] = upload["output"]
    receipt["statuses"]["dataset"] = wait_for_dataset(dataset_id, poll_seconds, dataset_timeout_seconds, sleep, clock)
    push_output = run_kaggle(kernel_push_command(kernel_dir))
    receipt["outputs"]["push"] = push_output
    version = receipt["version"] = parse_push_version(push_output)
    submit_args = kernel_submit_command(kernel_id, version, message)
    if not wait:
        receipt["statuses"]["kernel"] = "not waited for"
        receipt["submit_command"] = ["kaggle", *submit_args]
        return receipt
    receipt["statuses"]["kernel"] = wait_for_kernel(
        kernel_id, poll_seconds, timeout_seconds, sleep, version=version, clock=clock
    )
    submit_output = run_kaggle(submit_args)
    receipt["outputs"]["submit"] = submit_output
    receipt["submitted"] = True
    receipt["submitted_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    ref = re.search(r"Submission ref: (\d+)", submit_output)
    receipt["submission_ref"] = int(ref.group(1)) if ref else None
    return receipt
