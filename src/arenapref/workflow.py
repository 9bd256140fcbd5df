"""Running this workflow from Python: in a folder of its own, with a config written there (the
options table, the GPU check and the tests do)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

SNAKEFILE = Path(__file__).resolve().parents[2] / "Snakefile"


def programs_on_path(interpreter: str) -> str:
    """Put the folder of `interpreter` (where pip installed this package's programs: .venv/bin for
    `.venv/bin/snakemake`) first on PATH when PATH lacks it, so that the rules find `arenapref-*`
    however Snakemake was started. A PATH that has it (an activated environment, or one set by
    hand, say with a stand-in `kaggle` in front) stays as it is; under --sdm conda each job's own
    environment is activated in front of it. Returns the PATH."""
    folder = str(Path(interpreter).parent)
    path = os.environ.get("PATH", "")
    if folder not in path.split(os.pathsep):
        os.environ["PATH"] = path = os.pathsep.join(filter(None, [folder, path]))
    return path


def snakemake_command(workdir: Path, targets: Sequence[str], cores: str | int = 1, gpus: int | None = 1) -> list[str]:
    """Targets and flags come before --resources, which would take any later word as a resource."""
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *targets]
    command += ["--cores", str(cores)]
    return command + (["--resources", f"gpu={gpus}"] if gpus else [])


def run_workflow(
    workdir: Path,
    config: Mapping | None,
    targets: Sequence[str],
    cores: str | int = 1,
    gpus: int | None = 1,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Write `config` to workdir/config/config.yaml (the Snakefile's configfile) and run the targets
    there with this interpreter's snakemake (the workflow finds its programs beside it)."""
    if config is not None:
        (workdir / "config").mkdir(parents=True, exist_ok=True)
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        snakemake_command(workdir, targets, cores, gpus),
        env=environment,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )
