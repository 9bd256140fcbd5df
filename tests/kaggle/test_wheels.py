"""The Kaggle export's wheels: the package closure, marker evaluation, the download and an offline install
into a fresh virtual environment that, like Kaggle's image, already has torch."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from arenapref.errors import KaggleError
from arenapref.kaggle.wheels import (
    PREDICT_ROOTS,
    SFT_ROOTS,
    TORCH_PROVIDED,
    download_wheels,
    install_command,
    normalize,
    requirement_applies,
    requirement_closure,
    wheels_for_export,
)

ROOT = Path(__file__).resolve().parents[2]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def pinned() -> dict[str, str]:
    """requirements.txt as normalised name -> version."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalize(name)] = version.strip()
    return pins


def test_closure_holds_what_predict_imports_at_the_pins():
    closure = requirement_closure(PREDICT_ROOTS, exclude=TORCH_PROVIDED)
    for name in (
        "transformers",
        "peft",
        "polars",
        "numpy",
        "jsonschema",
        "tokenizers",
        "huggingface-hub",
        "bitsandbytes",
        "pyyaml",
        "tqdm",
        "safetensors",
        "scipy",
        "scikit-learn",
    ):
        assert name in closure, name
    for name in ("torch", "sympy", "mpmath", "networkx", "filelock", "jinja2", "trl"):
        assert name not in closure, name
    assert not [name for name in closure if name.startswith(("nvidia-", "triton"))]
    pins = pinned()
    assert {name: pins.get(name) for name in closure} == closure  # every package pinned, at its pin


def test_trl_only_for_the_sft_head():
    sft = requirement_closure(PREDICT_ROOTS + SFT_ROOTS, exclude=TORCH_PROVIDED)
    assert sft["trl"] == pinned()["trl"]
    assert set(requirement_closure(PREDICT_ROOTS, exclude=TORCH_PROVIDED)) < set(sft)


def test_torch_provided_comes_from_torch_metadata():
    for name in (
        "torch",
        "sympy",
        "mpmath",
        "networkx",
        "filelock",
        "typing-extensions",
        "jinja2",
        "markupsafe",
        "fsspec",
        "triton",
        "nvidia-*",
    ):
        assert name in TORCH_PROVIDED, name


def test_markers_are_evaluated_for_the_kaggle_target():
    assert requirement_applies("numpy>=1.17")
    assert not requirement_applies('tomli; python_version < "3.9"')
    assert requirement_applies('tomli; python_version < "3.12"', python_version="3.11")
    assert not requirement_applies('tomli; python_version < "3.12"', python_version="3.12")
    assert not requirement_applies('pywin32; sys_platform == "win32"')
    assert not requirement_applies('colorama; platform_system == "Windows"')
    assert requirement_applies('uvloop; sys_platform == "linux" and platform_machine == "x86_64"')
    assert not requirement_applies('pytest; extra == "test"')
    assert not requirement_applies('pytest; python_version >= "3.8" and extra == "test"')
    assert requirement_applies('pytest; extra == "test"', extras={"test"})  # asked for by a dependent's [test]


def test_a_package_that_is_not_installed_is_named():
    with pytest.raises(KaggleError, match="no-such-package-for-arenapref") as error:
        requirement_closure(["No_Such.Package-for-arenapref"])
    assert "\n" not in str(error.value)


def test_download_keeps_present_wheels_and_drops_others(tmp_path):
    dest = tmp_path / "wheels"
    dest.mkdir()
    (dest / "foo_bar-1.0-py3-none-any.whl").write_bytes(b"")
    (dest / "foo_bar-0.9-py3-none-any.whl").write_bytes(b"")  # an earlier pin: must not ship
    (dest / "foo_bar-1.0-cp311-cp311-win_amd64.whl").write_bytes(b"")  # wrong platform: useless on Kaggle
    # everything needed is present, so pip is not run (this would fail offline otherwise)
    download_wheels({"Foo.Bar": "1.0"}, dest, index_args=["--no-index"])
    assert sorted(path.name for path in dest.iterdir()) == ["foo_bar-1.0-py3-none-any.whl", "requirements.txt"]
    lines = (dest / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == ["foo-bar==1.0"]


def test_a_wheel_that_cannot_be_found_is_named(tmp_path):
    with pytest.raises(KaggleError, match="no-such-package-for-arenapref") as error:
        download_wheels(
            {"no-such-package-for-arenapref": "1.0"},
            tmp_path / "wheels",
            index_args=["--no-index", "--find-links", str(tmp_path)],
        )
    assert "\n" not in str(error.value)


def test_install_command_uses_no_index():
    assert install_command("wheels") == [
        "python",
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        "wheels",
        "-r",
        "wheels/requirements.txt",
    ]


def _clean_env(**extra: str) -> dict[str, str]:
    """This machine's pip settings (extra indexes, find-links) must not help the offline install."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PIP_") and key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PYTHONNOUSERSITE": "1", **extra}


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, env=_clean_env(**env), check=False)
    assert result.returncode == 0, f"{argv[:5]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _link_distribution(name: str, folder: Path) -> None:
    """Symlink an installed distribution's import folders/modules and dist-info into `folder`."""
    dist = md.distribution(name)
    for top in sorted({Path(file).parts[0] for file in dist.files or []} - {"..", "__pycache__"}):
        source = Path(dist.locate_file(top))
        if source.exists() and not top.endswith(".pth"):
            (folder / top).symlink_to(source)


def wheel_cache() -> Path:
    """A persistent wheelhouse of the closure for this Python, filled once; reruns need no network."""
    cache = Path(os.environ.get("ARENAPREF_WHEEL_CACHE", Path.home() / ".cache" / "arenapref-wheels")) / f"py{PY}"
    pins = requirement_closure(PREDICT_ROOTS, exclude=TORCH_PROVIDED, python_version=PY)
    try:
        download_wheels(pins, cache, python_version=PY)
    except KaggleError as error:
        if "could not reach the package index" in str(error):
            pytest.skip(f"PyPI cannot be reached: {error}")
        raise
    return cache


def kaggle_like_venv(root: Path) -> str:
    """Kaggle's image: a fresh interpreter that already has torch (and what torch needs), not from our
    wheels, and nothing else of ours. Returns its python."""
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    assert site != Path(sysconfig.get_paths()["purelib"])
    image = root / "image-site-packages"
    image.mkdir()
    for name in requirement_closure(["torch"], exclude=("nvidia-*",)):
        _link_distribution(name, image)
    # the venv's own setuptools (65.x on 3.11) would shadow the image's and break torch's setuptools>=77
    _run([python, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"])
    (site / "kaggle_image.pth").write_text(f"{image}\n", encoding="utf-8")
    return python


@pytest.mark.slow
def test_wheels_install_offline_beside_the_images_torch(tmp_path):
    cache = wheel_cache()
    pins = requirement_closure(PREDICT_ROOTS, exclude=TORCH_PROVIDED, python_version=PY)
    wheels = tmp_path / "wheels"
    summary = wheels_for_export(wheels, "classifier", PY, index_args=["--no-index", "--find-links", str(cache)])
    print(f"\n{summary['count']} wheels, {summary['total_mb']} MB for Python {PY}")
    assert summary["count"] == len(pins) == len(list(wheels.glob("*.whl"))) and summary["packages"] == pins
    assert summary["total_mb"] > 0 and summary["python_version"] == PY
    assert not list(wheels.glob("torch-*")) and "torch==" not in (wheels / "requirements.txt").read_text()

    python = kaggle_like_venv(tmp_path)
    image = tmp_path / "image-site-packages"
    _run(install_command(str(wheels), python=python))

    code = (
        "import torch, transformers, peft, polars, jsonschema, yaml, tqdm, safetensors, tokenizers, bitsandbytes; "
        "print(transformers.__version__, peft.__version__, polars.__version__, torch.__file__)"
    )
    out = _run([python, "-c", code]).stdout.split()
    assert out[:3] == [pins["transformers"], pins["peft"], pins["polars"]]
    assert Path(out[3]).parent.parent == image  # torch from the "image", not installed again
    listed = json.loads(_run([python, "-m", "pip", "list", "--verbose", "--format=json"]).stdout)
    torches = [entry for entry in listed if normalize(entry["name"]) == "torch"]
    assert len(torches) == 1 and Path(torches[0]["location"]) == image
    versions = {normalize(entry["name"]): entry["version"] for entry in listed}
    assert {name: versions.get(name) for name in pins} == pins
