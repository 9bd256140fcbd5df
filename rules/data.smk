rule make_sample_data:
    output:
        train=f"{SAMPLE_DIR}/train.csv",
        test=f"{SAMPLE_DIR}/test.csv",
        sample_submission=f"{SAMPLE_DIR}/sample_submission.csv",
    log:
        "results/logs/make_sample_data.log",
    conda:
        "../envs/data.yaml"
    params:
        out_dir=lambda wildcards, output: Path(output.train).parent,
        n_train=config["data"]["sample"]["n_train"],
        n_test=config["data"]["sample"]["n_test"],
        seed=config["data"]["sample"]["seed"],
    shell:
        "arenapref-make-sample-data --out-dir {params.out_dir} --n-train {params.n_train}"
        " --n-test {params.n_test} --seed {params.seed} > {log} 2>&1"


rule preprocess:
    input:
        train=config["data"]["train"],
        test=config["data"]["test"],
        extra=config["data"]["extra_train"],
        soft_labels=config["data"]["soft_labels"] or [],
    output:
        train="results/data/train.parquet",
        test="results/data/test.parquet",
        extra="results/data/extra.parquet",
        rule_rows="results/data/rule_rows.parquet",
        report="results/data/report.json",
    log:
        "results/logs/preprocess.log",
    benchmark:
        "results/benchmarks/preprocess.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        n_folds=config["folds"]["n"],
        seed=config["folds"]["seed"],
        max_turn_rows=config["folds"]["max_turn_rows"],
        min_turn_chars=config["folds"]["min_turn_chars"],
        soft_labels=lambda wildcards, input: (
            f"--soft-labels {shlex.quote(input.soft_labels)}"
            if input.soft_labels
            else ""
        ),
    shell:
        "arenapref-preprocess --train {input.train:q} --test {input.test:q}"
        " --n-folds {params.n_folds} --seed {params.seed}"
        " --max-turn-rows {params.max_turn_rows} --min-turn-chars {params.min_turn_chars}"
        " --extra {input.extra:q} --out-extra {output.extra} {params.soft_labels}"
        " --out-rule-rows {output.rule_rows}"
        " --out-train {output.train} --out-test {output.test} --report {output.report} > {log} 2>&1"
