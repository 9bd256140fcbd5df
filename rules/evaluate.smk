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
