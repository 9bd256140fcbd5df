"""The Kaggle side: download the competition files and submit, through the real `kaggle` CLI.

The CLI does the network work; this module checks what it can beforehand (credentials, the
submission itself), builds the command lines, unpacks only the files it expects, and keeps
credentials out of logs and messages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from arenapref.errors import KaggleError
from arenapref.io import atomic_path

COMPETITION = "lmsys-chatbot-arena"
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


def run_kaggle(args: Sequence[str]) -> str:
    """Run `kaggle ARGS`; return its output, or raise with the command and its output."""
    command = [kaggle_executable(), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise KaggleError(f"`kaggle {' '.join(args[:2])}` failed (exit {result.returncode}): {output[-2000:]}")
    return output


# The competition is positional: kaggle 2.x still parses `-c` but hides it as deprecated.
def download_command(dest: Path) -> list[str]:
    return ["competitions", "download", COMPETITION, "-p", str(dest)]


def submit_command(submission: Path, message: str) -> list[str]:
    return ["competitions", "submit", COMPETITION, "-f", str(submission), "-m", message]


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


def submit(submission: Path, message: str) -> str:
    require_credentials()
    return run_kaggle(submit_command(submission, message))
