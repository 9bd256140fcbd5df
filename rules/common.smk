import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The workflow's own checks come from the package beside it (standard library, jsonschema and PyYAML,
# which Snakemake has): importable where Snakemake runs without the package, as with `--sdm conda`.
sys.path.insert(0, str(Path(workflow.current_basedir).parent / "src"))
from arenapref.config import config_error_line
from arenapref.workflow import programs_on_path
from arenapref.model.model_files import checkpoint_problem


def stop(message):
    """End the run while the workflow is built (a dry run too) with one line and no traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# Fills every default from the schema, so rules can index config without .get(). Snakemake's own
# message for a wrong key prints the whole schema after the reason: one line instead.
try:
    validate(config, schema="../config/config.schema.yaml")
except WorkflowError as err:
    overrides = workflow.config_settings.config  # --config on the command line
    stop(
        config_error_line(config, workflow.configfiles, overrides)
        or str(err).splitlines()[0]
    )

# The conda environments install this repository's package from here (envs/*.yaml: -e "${ARENAPREF_ROOT}"):
# Snakemake builds them from copies of the env files, where a relative path would point elsewhere.
os.environ.update(ARENAPREF_ROOT=str(Path(workflow.current_basedir).parent))

# The rules call the package's programs (arenapref-*, kaggle) by name; they are installed beside
# the interpreter that runs Snakemake, which need not be on PATH (.venv/bin/snakemake, nothing
# activated). Cluster jobs run this file again under the same interpreter.
programs_on_path(sys.executable)


wildcard_constraints:
    fold=r"\d+",


FOLDS = list(range(config["folds"]["n"]))
FULL_FIT = config["folds"]["full_fit"]
SAMPLE_DIR = "results/sample"
EMBEDDED_CHECKPOINT = "results/model/smollm2-135m-instruct"


def model_checkpoint():
    """The configured local checkpoint, or the embedded default built by prepare_model."""
    return config["model"]["checkpoint"] or EMBEDDED_CHECKPOINT


# A checkpoint the user points at must be complete before anything runs, so that a dry run names
# what is missing; the embedded default is prepare_model's output and may not exist yet.
if Path(model_checkpoint()) != Path(EMBEDDED_CHECKPOINT):
    problem = checkpoint_problem(model_checkpoint())
    if problem:
        stop(f"{problem} (set by model.checkpoint)")


def settings_json(*sections):
    """Config sections as JSON for a script's --config; only the sections a rule reads, so a change
    elsewhere (say, inference batching) does not retrain the adapters."""
    return json.dumps({k: config[k] for k in sections}, sort_keys=True)


def gpu_job_threads(wildcards):
    """CPU threads of a GPU job: the cores shared among the GPU jobs that run at once, so that
    `--cores all --resources gpu=4` trains four folds side by side (and `--resources gpu=1` gives
    one job every core). Without a core count (a cluster run), 8."""

    def value(resource):
        return getattr(resource, "value", resource)

    cores = value(workflow.global_resources.get("_cores"))
    gpus = value(workflow.global_resources.get("gpu")) or 1
    if not isinstance(cores, int) or cores > 4096:
        return 8
    return max(1, cores // max(1, int(gpus)))


def fold_adapters():
    """Every trained adapter's folder name under results/folds/: fold0.. and, with folds.full_fit, full."""
    return [f"fold{k}" for k in FOLDS] + (["full"] if FULL_FIT else [])


def submission_adapters():
    """The adapters whose test predictions the submission averages (ensemble.adapters)."""
    chosen = config["ensemble"]["adapters"]
    if not FULL_FIT or chosen == "folds":
        return [f"fold{k}" for k in FOLDS]
    return ["full"] if chosen == "full" else fold_adapters()


# The pseudo-label stage's pairs (rules/evaluate.smk), asked for only when its target is.
def pseudo_label_pairs(wildcards):
    pairs = config["pseudo_label"]["pairs"]
    if not pairs:
        stop(
            "set pseudo_label.pairs to a CSV of pairs in test.csv's schema to make pseudo-labels"
        )
    return pairs
