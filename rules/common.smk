import json
import os
from pathlib import Path

from snakemake.utils import validate

# Fills every default from the schema, so rules can index config without .get().
validate(config, schema="../config/config.schema.yaml")

# The conda environments install this repository's package from here (envs/*.yaml: -e "${ARENAPREF_ROOT}"):
# Snakemake builds them from copies of the env files, where a relative path would point elsewhere.
os.environ.update(ARENAPREF_ROOT=str(Path(workflow.current_basedir).parent))


wildcard_constraints:
    fold=r"\d+",


FOLDS = list(range(config["folds"]["n"]))
FULL_FIT = config["folds"]["full_fit"]
SAMPLE_DIR = "results/sample"
EMBEDDED_CHECKPOINT = "results/model/smollm2-135m-instruct"


def model_checkpoint():
    """The configured local checkpoint, or the embedded default built by prepare_model."""
    return config["model"]["checkpoint"] or EMBEDDED_CHECKPOINT


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
