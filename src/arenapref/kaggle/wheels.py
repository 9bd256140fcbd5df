"""Wheels for the Kaggle export: everything predict.py imports except torch, at this project's pins.

Kaggle's notebook image brings its own torch (built for its CUDA) but different versions of
transformers, peft, polars, ... and, with internet off, cannot reach PyPI. So the export carries
the wheels of the packages predict.py needs, downloaded here for the image's Python, and the
notebook installs them with `install_command()` before it imports anything from arenapref.

The package set is the Requires-Dist closure of the roots below, read from the distributions
installed here (they carry requirements.txt's pins), evaluated for a Linux x86_64 CPython.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.metadata as md
import os
import re
import subprocess
import sys
from collections.abc import Collection, Iterable
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from arenapref.errors import KaggleError

# What predict.py imports: arenapref.kaggle.export and the modules it imports at load or prediction time.
# scipy and scikit-learn are imported by arenapref.evaluate.ensemble / arenapref.evaluate.features, which export
# imports.
PREDICT_ROOTS = (
    "transformers",
    "peft",
    "bitsandbytes",
    "polars",
    "numpy",
    "jsonschema",
    "pyyaml",
    "tqdm",
    "safetensors",
    "tokenizers",
    "scipy",
    "scikit-learn",
)
# Only the "sft" model head imports trl (arenapref.model.heads.SftHead); it pulls in datasets, pandas, pyarrow.
SFT_ROOTS = ("trl",)

# Torch's dependencies on Kaggle's CUDA build. The torch installed here may be the CPU build, whose
# metadata lacks triton and the nvidia-* runtime libraries, so those are named explicitly.
_TORCH_AND_CUDA_DEPS = (
    "torch",
    "triton",
    "nvidia-*",
    "filelock",
    "typing-extensions",
    "sympy",
    "mpmath",
    "networkx",
    "jinja2",
    "markupsafe",
    "fsspec",
    "setuptools",
)

# Kaggle's image is Ubuntu 22.04 (glibc 2.35): every manylinux tag up to that, newest first, so pip
# takes the best wheel a package offers; pure-Python (py3-none-any) wheels need no platform tag.
DEFAULT_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(35, 16, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)

REQUIREMENTS_FILE = "requirements.txt"
_CONNECTION_ERROR = re.compile(
    r"NewConnectionError|ConnectTimeout|Max retries exceeded|Temporary failure in name "
    r"resolution|Network is unreachable|Connection refused|ConnectionError",
    re.IGNORECASE,
)


def normalize(name: str) -> str:
    """PEP 503 name, so 'PyYAML', 'pyyaml' and 'huggingface_hub' match their metadata spellings."""
    return canonicalize_name(name)


def _full_version(python_version: str) -> str:
    """'3.11' -> '3.11.0' (markers on the patch level are rare; the image's patch is unknown here)."""
    parts = python_version.split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        raise KaggleError(f"python version {python_version!r} is not like '3.11'")
    return ".".join([*parts, "0"][:3])


def target_environment(python_version: str = "3.11") -> dict[str, str]:
    """Marker variables of the Kaggle image (Linux x86_64 CPython), not of the machine building the export."""
    full = _full_version(python_version)
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": ".".join(full.split(".")[:2]),
        "sys_platform": "linux",
    }


def requirement_applies(
    requirement: str | Requirement, python_version: str = "3.11", extras: Iterable[str] = ()
) -> bool:
    """Whether pip would install this Requires-Dist line on the target, with only `extras` requested.

    A marker naming `extra` is evaluated the way pip does (extra "" unless requested), so optional
    dependencies are left out while `... or extra == "x"` markers that hold anyway stay in."""
    req = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
    if req.marker is None:
        return True
    env = target_environment(python_version)
    marker: Marker = req.marker
    return any(marker.evaluate({**env, "extra": extra}) for extra in ("", *extras))


def _installed() -> dict[str, md.Distribution]:
    """Installed distributions by normalised name; the first on sys.path wins, as for imports."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist)
    return found


def _excluded(name: str, exclude: Collection[str]) -> bool:
    # canonicalize_name leaves '*' alone, so patterns are normalised like names
    return any(fnmatch.fnmatchcase(name, normalize(pattern)) for pattern in exclude)


def requirement_closure(
    roots: Iterable[str], exclude: Collection[str] = (), python_version: str = "3.11"
) -> dict[str, str]:
    """Normalised name -> installed version of `roots` and everything they require on the target.

    `exclude` holds names or fnmatch patterns ('nvidia-*'); an excluded package's own requirements
    are not followed (what the image provides brings its own). Every package reached must be
    installed here, at a version its dependents accept, since its pin is read from that install."""
    installed = _installed()
    closure: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    # (requirement, who asked for it) pairs, so an error can say why a package is needed
    pending: list[tuple[Requirement, str]] = [(Requirement(root), "the export's roots") for root in roots]
    while pending:
        req, wanted_by = pending.pop()
        name = normalize(req.name)
        if _excluded(name, exclude):
            continue
        dist = installed.get(name)
        if dist is None:
            raise KaggleError(
                f"{name} (required by {wanted_by}) is not installed here; "
                "install requirements.txt so its pin can be exported"
            )
        version = dist.version
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            raise KaggleError(
                f"{name} {version} is installed but {wanted_by} requires {name}{req.specifier}; "
                "reinstall requirements.txt"
            )
        closure[name] = version
        key = (name, frozenset(normalize(extra) for extra in req.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in dist.requires or []:
            try:
                child = Requirement(line)
            except InvalidRequirement as error:
                raise KaggleError(f"{name} {version}: unreadable requirement {line!r} ({error})") from None
            if requirement_applies(child, python_version, key[1]):
                pending.append((child, f"{name} {version}"))
    return dict(sorted(closure.items()))


def _torch_provided() -> tuple[str, ...]:
    """Torch and what it requires (from its installed metadata when torch is installed here)."""
    names = set(_TORCH_AND_CUDA_DEPS)
    # without torch installed here, the explicit list above is what the CUDA build requires
    with contextlib.suppress(KaggleError):
        names |= set(requirement_closure(["torch"], exclude=("nvidia-*",)))
    return tuple(sorted(names))


TORCH_PROVIDED = _torch_provided()


def target_tags(python_version: str = "3.11", platforms: Iterable[str] = DEFAULT_PLATFORMS) -> set[Tag]:
    """The wheel tags pip accepts for the target, as `pip download --python-version/--abi/--platform` sees them."""
    version = tuple(int(part) for part in _full_version(python_version).split(".")[:2])
    abi = f"cp{version[0]}{version[1]}"
    platforms = list(platforms)
    return set(cpython_tags(version, abis=[abi], platforms=platforms)) | set(
        compatible_tags(version, interpreter=abi, platforms=platforms)
    )


def _wheels_in(dest: Path, tags: set[Tag]) -> dict[tuple[str, Version], list[Path]]:
    found: dict[tuple[str, Version], list[Path]] = {}
    for path in dest.glob("*.whl"):
        try:
            name, version, _build, wheel_tags = parse_wheel_filename(path.name)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if wheel_tags & tags:
            found.setdefault((str(name), version), []).append(path)
    return found


def _pip_tail(output: str, lines: int = 4) -> str:
    kept = [line.strip() for line in output.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def download_wheels(
    requirements: dict[str, str],
    dest: Path,
    python_version: str = "3.11",
    platforms: Iterable[str] = DEFAULT_PLATFORMS,
    index_args: list[str] | None = None,
) -> Path:
    """Put exactly one wheel per `name==version` for the target into `dest`, plus dest/requirements.txt.

    Wheels already in `dest` are kept and not fetched again, so a rerun needs no network; any other
    `*.whl` there (an old pin, another platform) is removed, since everything in `dest` is shipped.
    `index_args` are passed to pip, e.g. ["--find-links", wheelhouse], or ["--no-index", "--find-links",
    wheelhouse] to build from a local wheelhouse only."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    platforms = tuple(platforms)
    tags = target_tags(python_version, platforms)
    pins = {normalize(name): version for name, version in requirements.items()}
    wanted = {(name, Version(version)) for name, version in pins.items()}
    present = _wheels_in(dest, tags)
    keep = {path for key, paths in present.items() if key in wanted for path in paths}
    for path in dest.glob("*.whl"):
        if path not in keep:
            path.unlink()
    missing = sorted(f"{name}=={pins[name]}" for name, version in wanted if (name, version) not in present)
    if missing:
        major, minor = _full_version(python_version).split(".")[:2]
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            f"{major}.{minor}",
            "--implementation",
            "cp",
            "--abi",
            f"cp{major}{minor}",
            *(arg for platform in platforms for arg in ("--platform", platform)),
            "--dest",
            str(dest),
            "--progress-bar",
            "off",
            *(index_args or []),
            *missing,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            why = "could not reach the package index" if _CONNECTION_ERROR.search(output) else "failed"
            raise KaggleError(
                f"pip download of {len(missing)} wheels for Python {major}.{minor} {why}: {_pip_tail(output)}"
            )
    landed = _wheels_in(dest, tags)
    absent = sorted(f"{name}=={pins[name]}" for name, version in wanted if not landed.get((name, version)))
    if absent:
        raise KaggleError(f"no wheel for Python {python_version} on Linux x86_64 in {dest}: {', '.join(absent)}")
    doubled = sorted(name for (name, version), paths in landed.items() if len(paths) > 1)
    if doubled:
        raise KaggleError(f"{dest} holds more than one wheel for {', '.join(doubled)}; remove the extras")
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    (dest / REQUIREMENTS_FILE).write_text(
        "# Installed offline by the Kaggle notebook (arenapref.kaggle.wheels.install_command); torch comes from the\n"
        "# image.\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    return dest


def install_command(wheels_dir: str | os.PathLike[str] = "wheels", python: str = "python") -> list[str]:
    """The argv the notebook runs before predict.py: install the wheels with no index at all."""
    wheels = os.fspath(wheels_dir)
    return [
        python,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        wheels,
        "-r",
        os.path.join(wheels, REQUIREMENTS_FILE),
    ]


def roots_for_head(head: str) -> tuple[str, ...]:
    """The packages predict.py imports for model.head `head` (trl only for "sft")."""
    if head not in ("classifier", "sft"):
        raise KaggleError(f"unknown model.head {head!r} (classifier or sft): cannot choose the export's wheels")
    return PREDICT_ROOTS + (SFT_ROOTS if head == "sft" else ())


def wheels_for_export(dest: Path, head: str, python_version: str = "3.11", index_args: list[str] | None = None) -> dict:
    """Download the wheels predict.py needs for `head` into `dest`; return the export manifest's summary."""
    pins = requirement_closure(roots_for_head(head), exclude=TORCH_PROVIDED, python_version=python_version)
    dest = download_wheels(pins, Path(dest), python_version=python_version, index_args=index_args)
    wheels = sorted(dest.glob("*.whl"))
    return {
        "python_version": python_version,
        "count": len(wheels),
        "total_mb": round(sum(path.stat().st_size for path in wheels) / 2**20, 1),
        "packages": pins,
        "install": " ".join(install_command(dest.name)),
    }
