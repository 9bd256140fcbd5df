# Figures and tables for `snakemake --report results/report.html` (make report).


rule report_figures:
    input:
        metrics="results/metrics.json",
        oof="results/oof.parquet",
        data="results/data/train.parquet",
        features="results/features/oof.parquet",
        logs=expand("results/folds/fold{fold}/train_log.json", fold=FOLDS),
        data_report="results/data/report.json",
    output:
        calibration=report(
            "results/report/calibration.svg",
            caption="../report/calibration.rst",
            category="Evaluation",
        ),
        confusion=report(
            "results/report/confusion.svg",
            caption="../report/confusion.rst",
            category="Evaluation",
        ),
        per_fold=report(
            "results/report/per_fold.svg",
            caption="../report/per_fold.rst",
            category="Evaluation",
        ),
        scores=report(
            "results/report/scores.html",
            caption="../report/scores.rst",
            category="Evaluation",
        ),
        curves=report(
            "results/report/training_curves.svg",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        lengths=report(
            "results/report/token_lengths.svg",
            caption="../report/token_lengths.rst",
            category="Data",
        ),
        data=report(
            "results/report/data.html",
            caption="../report/data.rst",
            category="Data",
        ),
        benchmark=report(
            "results/report/benchmark.html",
            caption="../report/benchmark.rst",
            category="Benchmark",
        ),
    log:
        "results/logs/report_figures.log",
    conda:
        "../envs/data.yaml"
    params:
        max_length=config["model"]["max_length"],
        # Read when present, not an input: as an input, a settings change would rerun the
        # ten-minute benchmark as part of every run.
        benchmark=lambda wildcards: (
            "--benchmark results/speed/benchmark.md"
            if Path("results/speed/benchmark.md").exists()
            else ""
        ),
    shell:
        "arenapref-report-figures --metrics {input.metrics} --oof {input.oof} --data {input.data}"
        " --features-oof {input.features} --train-logs {input.logs} --data-report {input.data_report}"
        " {params.benchmark} --max-length {params.max_length} --out-dir results/report > {log} 2>&1"
