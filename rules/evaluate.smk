# Each fold's adapter predicts its validation rows (out of fold) and the test rows; the out-of-fold
# evaluation chooses the post-processing; the fold ensemble becomes the submission.


rule predict_fold:
    input:
        data="results/data/train.parquet",
        test="results/data/test.parquet",
        checkpoint=model_checkpoint(),
        adapter="results/folds/fold{fold}/adapter",
    output:
        oof="results/folds/fold{fold}/oof.parquet",
        test="results/folds/fold{fold}/test.parquet",
    log:
        "results/logs/predict_fold{fold}.log",
    benchmark:
        "results/benchmarks/predict_fold{fold}.tsv"
    conda:
        "../envs/model.yaml"
    # torch uses what Snakemake grants (it sets OMP_NUM_THREADS).
    threads: gpu_job_threads
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=240,
    params:
        settings=settings_json("model", "train", "predict", "device"),
    shell:
        "arenapref-predict-fold --data {input.data} --test {input.test} --fold {wildcards.fold}"
        " --checkpoint {input.checkpoint:q} --adapter-dir {input.adapter}"
        " --config {params.settings:q} --out-oof {output.oof} --out-test {output.test} > {log} 2>&1"


# The full fit's adapter (folds.full_fit): test predictions only.
rule predict_full:
    input:
        data="results/data/train.parquet",
        test="results/data/test.parquet",
        checkpoint=model_checkpoint(),
        adapter="results/folds/full/adapter",
    output:
        test="results/folds/full/test.parquet",
    log:
        "results/logs/predict_full.log",
    benchmark:
        "results/benchmarks/predict_full.tsv"
    conda:
        "../envs/model.yaml"
    threads: gpu_job_threads
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=240,
    params:
        settings=settings_json("model", "train", "predict", "device"),
    shell:
        "arenapref-predict-fold --data {input.data} --test {input.test} --fold full"
        " --checkpoint {input.checkpoint:q} --adapter-dir {input.adapter}"
        " --config {params.settings:q} --out-test {output.test} > {log} 2>&1"


rule features:
    input:
        data="results/data/train.parquet",
        test="results/data/test.parquet",
    output:
        oof="results/features/oof.parquet",
        test="results/features/test.parquet",
        model="results/features/model.json",
    log:
        "results/logs/features.log",
    conda:
        "../envs/data.yaml"
    params:
        seed=config["train"]["seed"],
    shell:
        "arenapref-features --data {input.data} --test {input.test} --seed {params.seed}"
        " --out-oof {output.oof} --out-test {output.test} --out-model {output.model} > {log} 2>&1"


rule evaluate:
    input:
        data="results/data/train.parquet",
        oof=expand("results/folds/fold{fold}/oof.parquet", fold=FOLDS),
        logs=expand("results/folds/fold{fold}/train_log.json", fold=FOLDS),
        features="results/features/oof.parquet",
    output:
        oof="results/oof.parquet",
        metrics="results/metrics.json",
        postprocessing="results/postprocessing.json",
    log:
        "results/logs/evaluate.log",
    conda:
        "../envs/data.yaml"
    params:
        settings=json.dumps(config, sort_keys=True),
    shell:
        "arenapref-evaluate --data {input.data} --oof {input.oof} --train-logs {input.logs}"
        " --features-oof {input.features} --config {params.settings:q} --out-oof {output.oof}"
        " --out-metrics {output.metrics} --out-postprocessing {output.postprocessing} > {log} 2>&1"


rule submission:
    input:
        test=expand("results/folds/{name}/test.parquet", name=submission_adapters()),
        sample_submission=config["data"]["sample_submission"],
        postprocessing="results/postprocessing.json",
        features="results/features/test.parquet",
    output:
        "results/submission.csv",
    log:
        "results/logs/submission.log",
    conda:
        "../envs/data.yaml"
    shell:
        "arenapref-make-submission --test-preds {input.test} --sample-submission {input.sample_submission:q}"
        " --postprocessing {input.postprocessing} --features-test {input.features} --out {output} > {log} 2>&1"
