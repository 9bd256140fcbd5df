import json
from pathlib import Path

from snakemake.utils import validate

# Fills every default from the schema, so rules can index config without .get().
validate(config, schema="../config/config.schema.yaml")


wildcard_constraints:
    fold=r"\d+",


FOLDS = list(range(config["folds"]["n"]))
SAMPLE_DIR = "results/sample"
EMBEDDED_CHECKPOINT = "results/model/smollm2-135m-instruct"
SCRIPTS = Path(workflow.basedir) / "scripts"


def script(name):
    return str(SCRIPTS / name)


def model_checkpoint():
    """The configured local checkpoint, or the embedded default built by prepare_model."""
    return config["model"]["checkpoint"] or EMBEDDED_CHECKPOINT


def settings_json(*sections):
    """Config sections as JSON for a script's --config; only the sections a rule reads, so a change
    elsewhere (say, inference batching) does not retrain the adapters."""
    return json.dumps({k: config[k] for k in sections}, sort_keys=True)
