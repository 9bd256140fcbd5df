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


# ensemble.adapters: soup. The folds' adapters as one (the mean of their weight changes); it predicts
# the test rows only: the out-of-fold metrics stay the folds'.
rule soup:
    input:
        adapters=expand("results/folds/fold{fold}/adapter", fold=FOLDS),
    output:
        adapter=directory("results/folds/soup/adapter"),
    log:
        "results/logs/soup.log",
    benchmark:
        "results/benchmarks/soup.tsv"
    conda:
        "../envs/model.yaml"
    shell:
        "arenapref-make-soup --adapters {input.adapters} --out {output.adapter} > {log} 2>&1"


rule predict_soup:
    input:
        data="results/data/train.parquet",
        test="results/data/test.parquet",
        checkpoint=model_checkpoint(),
        adapter="results/folds/soup/adapter",
    output:
        test="results/folds/soup/test.parquet",
    log:
        "results/logs/predict_soup.log",
    benchmark:
        "results/benchmarks/predict_soup.tsv"
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
        "arenapref-predict-fold --data {input.data} --test {input.test} --fold soup"
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
        rule_rows="results/data/rule_rows.parquet",
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
        " --features-oof {input.features} --rule-rows {input.rule_rows}"
        " --config {params.settings:q} --out-oof {output.oof}"
        " --out-metrics {output.metrics} --out-postprocessing {output.postprocessing} > {log} 2>&1"


rule submission:
    input:
        test=expand(
            "results/folds/{name}/test.parquet",
            name=(
                ["soup"]
                if config["ensemble"]["adapters"] == "soup"
                else submission_adapters()
            ),
        ),
        sample_submission=config["data"]["sample_submission"],
        postprocessing="results/postprocessing.json",
        features="results/features/test.parquet",
        test_data="results/data/test.parquet",
    output:
        "results/submission.csv",
    log:
        "results/logs/submission.log",
    conda:
        "../envs/data.yaml"
    shell:
        "arenapref-make-submission --test-preds {input.test} --sample-submission {input.sample_submission:q}"
        " --postprocessing {input.postprocessing} --features-test {input.features}"
        " --test-data {input.test_data} --out {output} > {log} 2>&1"


# The pseudo-label stage (not part of the default run): the fold ensemble labels pairs that have no
# winner, for a later run's data.soft_labels (with the pairs in data.extra_train):
#   snakemake results/pseudo_labels/soft_labels.csv --config 'pseudo_label={"pairs": "pairs.csv"}'
rule pseudo_label_prepare:
    input:
        pseudo_label_pairs,
    output:
        "results/pseudo_labels/pairs.parquet",
    log:
        "results/logs/pseudo_label_prepare.log",
    conda:
        "../envs/data.yaml"
    shell:
        "arenapref-pseudo-label prepare --pairs {input:q} --out {output} > {log} 2>&1"


rule pseudo_label_predict:
    input:
        data="results/data/train.parquet",
        pairs="results/pseudo_labels/pairs.parquet",
        checkpoint=model_checkpoint(),
        adapter="results/folds/fold{fold}/adapter",
    output:
        "results/pseudo_labels/fold{fold}.parquet",
    log:
        "results/logs/pseudo_label_predict{fold}.log",
    benchmark:
        "results/benchmarks/pseudo_label_predict{fold}.tsv"
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
        "arenapref-predict-fold --data {input.data} --test {input.pairs} --fold full"
        " --checkpoint {input.checkpoint:q} --adapter-dir {input.adapter}"
        " --config {params.settings:q} --out-test {output} > {log} 2>&1"


rule pseudo_label:
    input:
        pairs="results/pseudo_labels/pairs.parquet",
        preds=expand("results/pseudo_labels/fold{fold}.parquet", fold=FOLDS),
        postprocessing="results/postprocessing.json",
        features_model="results/features/model.json",
    output:
        "results/pseudo_labels/soft_labels.csv",
    log:
        "results/logs/pseudo_label.log",
    conda:
        "../envs/data.yaml"
    shell:
        "arenapref-pseudo-label combine --pairs {input.pairs} --preds {input.preds}"
        " --postprocessing {input.postprocessing} --features-model {input.features_model}"
        " --out {output} > {log} 2>&1"
