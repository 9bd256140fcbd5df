"""Submitting through a notebook with the real `kaggle` CLI (arenapref.kaggle.client builds its command
lines and calls it). The competition scores notebook (kernel) submissions only, so a submission is:
upload the export folder as a dataset (create it, or a new version), wait until Kaggle has processed
it, push the notebook (arenapref.kaggle.kernel), wait for its run, then `competitions submit -k KERNEL -v
VERSION`. Every wait polls with the CLI and gives up after MAX_POLL_FAILURES failed polls in a row;
credentials stay out of messages and receipts.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from arenapref.errors import KaggleError
from arenapref.io import dir_sha256
from arenapref.kaggle.client import (
    call_kaggle,
    dataset_create_command,
    dataset_status_command,
    dataset_version_command,
    kernel_log_hint,
    kernel_push_command,
    kernel_status_command,
    kernel_submit_command,
    one_line,
    require_credentials,
    run_kaggle,
)
from arenapref.kaggle.kernel import (
    COMPETITION,
    DATASET_HANDLE,
    PLACEHOLDER_OWNER,
    SUBMISSION_FILE,
    check_kernel_folder,
    check_kernel_id,
)

log = logging.getLogger(__name__)

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
    raise KaggleError(f"`kaggle datasets status {dataset_id}` failed (exit {code}): {one_line(output)}")


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
        raise KaggleError(f"`kaggle datasets {action}` refused {dataset_id}: {one_line(refused.group(1))}")
    log.info("datasets %s %s: %s", action, dataset_id, one_line(output, 200))
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
                    f"`kaggle {' '.join(args)}` failed {failures} times in a row (exit {code}): {one_line(output)}"
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
        raise KaggleError(f"`kaggle kernels push` refused the kernel: {one_line(refused.group(1))}")
    pushed = re.search(r"Kernel version (\d+) successfully pushed", output)
    dropped = re.findall(
        r"The following are not valid (\w+) sources and could not be added to the kernel: (.*)", output
    )
    if dropped:
        # Without its inputs the run fails or predicts from nothing; not worth waiting hours for.
        which = "; ".join(f"{kind} {names}" for kind, names in dropped)
        version = f" (version {pushed.group(1)} runs without them)" if pushed else ""
        raise KaggleError(
            f"Kaggle dropped the kernel's inputs{version}: {one_line(which, 300)}; "
            "check the ids in kernel-metadata.json and that you can open them on kaggle.com"
        )
    if pushed is None:
        raise KaggleError(
            f"no version number in `kaggle kernels push`'s output ({one_line(output, 300)}); "
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
        raise KaggleError(f"no status in `kaggle kernels status`'s output: {one_line(output, 300)}")
    status = found.group(1).rsplit(".", 1)[-1].strip().lower()
    failure = re.search(r'Failure message: "(.*)"', output, re.DOTALL)
    return status, (one_line(failure.group(1), 300) if failure else None)


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
