"""The Kaggle side, with the real `kaggle` CLI: credentials, calling the CLI, its command lines, and
downloading the competition files.

The competition scores notebook (kernel) submissions only; arenapref.kaggle.notebook_submission runs one with
the command lines built here. The CLI does the network work; this module checks what it can beforehand
(credentials), builds the command lines, reads the CLI's printed answers (kaggle 2.2.5 prints several
failures with exit status 0), and keeps credentials out of logs and messages.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from arenapref.errors import KaggleError
from arenapref.io import atomic_path
from arenapref.kaggle.kernel import (
    COMPETITION,
    SUBMISSION_FILE,
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


def one_line(text: str, limit: int = 800) -> str:
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
        raise KaggleError(f"`kaggle {' '.join(args[:2])}` failed (exit {code}): {one_line(output)}")
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
