rule evaluate:
    input:
        data="results/data/train.parquet",
        oof=expand("results/folds/fold{fold}/oof.parquet", fold=FOLDS),
        logs=expand("results/folds/fold{fold}/train_log.json", fold=FOLDS),
    output:
        oof="results/oof.parquet",
        metrics="results/metrics.json",
    log:
        "results/logs/evaluate.log",
    conda:
        "../envs/data.yaml"
    params:
        script=script("evaluate.py"),
        settings=json.dumps(config, sort_keys=True),
    shell:
        "python {params.script} --data {input.data} --oof {input.oof} --train-logs {input.logs}"
        " --config {params.settings:q} --out-oof {output.oof} --out-metrics {output.metrics} > {log} 2>&1"


rule submission:
    input:
        test=expand("results/folds/fold{fold}/test.parquet", fold=FOLDS),
        sample_submission=config["data"]["sample_submission"],
    output:
        "results/submission.csv",
    log:
        "results/logs/submission.log",
    conda:
        "../envs/data.yaml"
    params:
        script=script("make_submission.py"),
    shell:
        "python {params.script} --test-preds {input.test} --sample-submission {input.sample_submission:q}"
        " --out {output} > {log} 2>&1"
