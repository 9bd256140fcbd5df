"""The Kaggle notebook that makes a submission: kernel-metadata.json and run.py for `kaggle kernels push`.

The competition scores notebooks only, run on GPU T4 x2 with the internet off. The notebook reads the
exported folder (uploaded as a Kaggle dataset) and the base checkpoint from its attached inputs, installs
the export's wheels offline when it ships any, runs the export's predict.py on the competition's test.csv
and leaves /kaggle/working/submission.csv, the file `competitions submit -k KERNEL -v VERSION` names.

Nothing here talks to Kaggle: this module only writes and checks the folder that
arenapref.kaggle.notebook_submission pushes.
The field names are the ones the kaggle CLI 2.2.5 reads in `kernels push` (KaggleApi.kernels_push).
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

from arenapref.errors import KaggleError
from arenapref.io import atomic_dir

COMPETITION = "lmsys-chatbot-arena"
KAGGLE_INPUT = "/kaggle/input"
KAGGLE_WORKING = "/kaggle/working"
METADATA_FILE = "kernel-metadata.json"
CODE_FILE = "run.py"
SUBMISSION_FILE = "submission.csv"
# "GPU T4 x2", what the competition's notebooks run on; enable_gpu alone leaves the choice to Kaggle.
MACHINE_SHAPE = "NvidiaTeslaT4"
PLACEHOLDER_OWNER = "YOUR_KAGGLE_USERNAME"

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
DATASET_HANDLE = re.compile(rf"^(?P<owner>{_PART})/(?P<slug>{_PART})$")
MODEL_HANDLE = re.compile(rf"^(?P<owner>{_PART})/(?P<mount>{_PART}/{_PART}/{_PART}/[0-9]+)$")
# The CLI refuses kernel slugs under five characters; Kaggle makes slugs of lowercase words and hyphens.
KERNEL_ID = re.compile(r"^(?P<owner>[A-Za-z0-9_-]+)/(?P<slug>[a-z0-9][a-z0-9-]{4,49})$")
# The options run.py sets itself; a second copy in predict_args would silently win or clash.
RESERVED_PREDICT_OPTIONS = ("--base-model", "--test", "--out", "--export-dir")


def dataset_slug(dataset_id: str) -> str:
    match = DATASET_HANDLE.match(dataset_id)
    if match is None:
        raise KaggleError(f"dataset id {dataset_id!r} is not owner/slug")
    return match["slug"]


def check_kernel_id(kernel_id: str) -> str:
    if KERNEL_ID.match(kernel_id) is None:
        raise KaggleError(f"kernel id {kernel_id!r} is not owner/slug (slug: 5-50 lowercase letters, digits, hyphens)")
    return kernel_id


def kaggle_input_path(handle: str) -> str:
    """Where an attached input mounts in the notebook.

    A dataset owner/slug mounts at /kaggle/input/slug, a Kaggle Models handle
    owner/model/framework/variation/version at /kaggle/input/model/framework/variation/version;
    an absolute /kaggle/input/... path (an input attached by hand) is its own mount.
    """
    if handle.startswith("/"):
        path = posixpath.normpath(handle)
        if not path.startswith(KAGGLE_INPUT + "/"):
            raise KaggleError(f"base model path {handle!r} is not under {KAGGLE_INPUT}/, where a notebook's inputs are")
        return path
    if match := MODEL_HANDLE.match(handle):
        return f"{KAGGLE_INPUT}/{match['mount']}"
    if match := DATASET_HANDLE.match(handle):
        return f"{KAGGLE_INPUT}/{match['slug']}"
    raise KaggleError(
        f"{handle!r} is not a Kaggle dataset (owner/slug), a Kaggle model "
        f"(owner/model/framework/variation/version) or a {KAGGLE_INPUT}/... path"
    )


def _slugify(title: str) -> str:
    """Kaggle's slug of an ASCII title (python-slugify, which the CLI uses, agrees on ASCII)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def kernel_metadata(kernel_id: str, dataset_id: str, base_model: str, title: str | None = None) -> dict:
    check_kernel_id(kernel_id)
    dataset_slug(dataset_id)
    kaggle_input_path(base_model)  # validates the handle
    slug = kernel_id.split("/")[1]
    title = slug if title is None else title
    # Kaggle names a pushed kernel after its title: one that slugs differently makes a second notebook,
    # and the status and submit calls, which use the id, would not see the run.
    if _slugify(title) != slug:
        raise KaggleError(
            f"kernel title {title!r} makes the slug {_slugify(title)!r}, not {slug!r}; "
            "pick a title whose words match the kernel id"
        )
    dataset_sources = [dataset_id]
    model_sources = []
    if MODEL_HANDLE.match(base_model):
        model_sources.append(base_model)
    elif DATASET_HANDLE.match(base_model) and base_model != dataset_id:
        dataset_sources.append(base_model)
    return {
        "id": kernel_id,
        "title": title,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,  # the competition scores notebooks with the internet off
        "machine_shape": MACHINE_SHAPE,
        "dataset_sources": dataset_sources,
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": model_sources,
    }


RUN_TEMPLATE = '''\
"""arenapref's submission notebook: predicts the competition's test.csv offline into submission.csv.

Written by arenapref.kaggle.kernel.write_kernel_folder (regenerate it rather than edit it). The internet is off:
the export's wheels, when it ships any, are installed from the attached dataset, nothing is downloaded.
KAGGLE_INPUT_ROOT and KAGGLE_WORKING stand in for /kaggle/input and /kaggle/working away from Kaggle.
"""

import os
import subprocess
import sys
from pathlib import Path

INPUT = Path(os.environ.get("KAGGLE_INPUT_ROOT", {input_root}))
WORKING = Path(os.environ.get("KAGGLE_WORKING", {working}))
EXPORT = INPUT / {export}
BASE_MODEL = INPUT / {base_model}
TEST = INPUT / {competition} / "test.csv"
SUBMISSION = WORKING / {submission}
PREDICT_ARGS = {predict_args}


def require(path, what):
    """Stop with what is attached when an input is missing, so the log says which one to attach."""
    if not path.exists():
        attached = sorted(str(p.relative_to(INPUT)) for p in INPUT.glob("*")) if INPUT.is_dir() else []
        sys.exit(f"{{what}} not found at {{path}}; attached inputs: {{attached}}")


def main():
    require(EXPORT / "predict.py", "the arenapref export (dataset)")
    require(BASE_MODEL, "the base model")
    require(TEST, "the competition test.csv")
    wheels = EXPORT / "wheels"
    if (wheels / "requirements.txt").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
                        "-r", str(wheels / "requirements.txt")], check=True)
    SUBMISSION.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(EXPORT / "predict.py"), "--base-model", str(BASE_MODEL),
                    "--test", str(TEST), "--out", str(SUBMISSION), *PREDICT_ARGS], check=True)
    with open(SUBMISSION, encoding="utf-8") as handle:
        for _, line in zip(range(6), handle):
            print(line.rstrip("\\n"))


if __name__ == "__main__":
    main()
'''


def run_script(dataset_id: str, base_model: str, predict_args: list[str] | None = None) -> str:
    predict_args = list(predict_args or [])
    for arg in predict_args:
        if not isinstance(arg, str):
            raise KaggleError(f"predict argument {arg!r} is not a string")
        if arg.split("=", 1)[0] in RESERVED_PREDICT_OPTIONS:
            raise KaggleError(f"predict argument {arg!r} is set by run.py itself; leave it out")
    # Paths are kept relative to the input root so that KAGGLE_INPUT_ROOT moves all of them.
    base_model_path = posixpath.relpath(kaggle_input_path(base_model), KAGGLE_INPUT)
    values = {
        "input_root": KAGGLE_INPUT,
        "working": KAGGLE_WORKING,
        "export": dataset_slug(dataset_id),
        "base_model": base_model_path,
        "competition": COMPETITION,
        "submission": SUBMISSION_FILE,
        "predict_args": predict_args,
    }
    # JSON strings and lists of strings are Python literals too.
    return RUN_TEMPLATE.format(**{key: json.dumps(value) for key, value in values.items()})


def write_kernel_folder(
    out_dir: Path,
    kernel_id: str,
    dataset_id: str,
    base_model: str,
    predict_args: list[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write kernel-metadata.json and run.py into `out_dir` (replaced as a whole, atomically).

    Keep `out_dir` outside the exported dataset folder: `datasets version --dir-mode zip` would upload
    it as part of the dataset.
    """
    metadata = kernel_metadata(kernel_id, dataset_id, base_model, title)
    script = run_script(dataset_id, base_model, predict_args)
    out = Path(out_dir)
    with atomic_dir(out) as staging:
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        (staging / CODE_FILE).write_text(script, encoding="utf-8")
    return out


def check_kernel_folder(kernel_dir: Path, dataset_id: str) -> dict:
    """The kernel folder's metadata, once it is known to run this export the way the competition requires."""
    kernel_dir = Path(kernel_dir)
    meta_file = kernel_dir / METADATA_FILE
    if not meta_file.is_file():
        raise KaggleError(f"{kernel_dir}: no {METADATA_FILE}; `snakemake export_kaggle` writes it")
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise KaggleError(f"{meta_file}: not JSON ({err})") from None
    kernel_id = check_kernel_id(str(metadata.get("id", "")))
    if kernel_id.startswith(PLACEHOLDER_OWNER + "/"):
        raise KaggleError(f"{meta_file}: the kernel id is still {kernel_id!r}; set kaggle.kernel_id in the config")
    code_file = kernel_dir / str(metadata.get("code_file", ""))
    if not metadata.get("code_file") or not code_file.is_file():
        raise KaggleError(f"{meta_file}: code_file {metadata.get('code_file')!r} is not in {kernel_dir}")
    if dataset_id not in metadata.get("dataset_sources", []):
        raise KaggleError(
            f"{meta_file}: dataset_sources {metadata.get('dataset_sources')} lack the export's "
            f"dataset {dataset_id}; rerun `snakemake export_kaggle`"
        )
    if metadata.get("enable_internet") is not False:
        raise KaggleError(f"{meta_file}: enable_internet must be false, the competition scores offline notebooks")
    if COMPETITION not in metadata.get("competition_sources", []):
        raise KaggleError(f"{meta_file}: competition_sources lack {COMPETITION}, whose test.csv the notebook reads")
    return metadata
