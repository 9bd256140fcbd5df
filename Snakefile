# Predict human preference between two chatbot answers (LMSYS Chatbot Arena).
# Run: snakemake --cores 1 --resources gpu=1   (see README.md for SLURM and Kaggle)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/kaggle.smk"
include: "rules/benchmark.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/submission.csv",
        "results/metrics.json",
        rules.report_figures.output,
