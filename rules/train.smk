rule train_fold:
    input:
        data="results/data/train.parquet",
        extra="results/data/extra.parquet",
        checkpoint=model_checkpoint(),
    output:
        adapter=directory("results/folds/fold{fold}/adapter"),
        log="results/folds/fold{fold}/train_log.json",
    log:
        "results/logs/train_fold{fold}.log",
    benchmark:
        "results/benchmarks/train_fold{fold}.tsv"
    conda:
        "../envs/model.yaml"
    # torch uses what Snakemake grants (it sets OMP_NUM_THREADS).
    threads: gpu_job_threads
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=720,
    params:
        settings=settings_json("model", "train", "device"),
        # Resume state is not a declared output: Snakemake deletes those when a job fails.
        resume_dir="results/resume/fold{fold}",
        fold="{fold}",
    shell:
        "arenapref-train-fold --data {input.data} --fold {params.fold}"
        " --checkpoint {input.checkpoint:q} --config {params.settings:q}"
        " --adapter-dir {output.adapter} --log {output.log}"
        " --resume-dir {params.resume_dir} --extra {input.extra} > {log} 2>&1"


# The full fit (folds.full_fit): every row, a fold's optimizer steps; test predictions only.
use rule train_fold as train_full with:
    output:
        adapter=directory("results/folds/full/adapter"),
        log="results/folds/full/train_log.json",
    log:
        "results/logs/train_full.log",
    benchmark:
        "results/benchmarks/train_full.tsv"
    params:
        settings=settings_json("model", "train", "device"),
        resume_dir="results/resume/full",
        fold="full",
