rule make_sample_data:
    output:
        train=f"{SAMPLE_DIR}/train.csv",
        test=f"{SAMPLE_DIR}/test.csv",
        sample_submission=f"{SAMPLE_DIR}/sample_submission.csv",
    params:
        script=script("make_sample_data.py"),
        out_dir=SAMPLE_DIR,
        n_train=config["data"]["sample"]["n_train"],
        n_test=config["data"]["sample"]["n_test"],
        seed=config["data"]["sample"]["seed"],
    log:
        "results/logs/make_sample_data.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python {params.script} --out-dir {params.out_dir} --n-train {params.n_train}"
        " --n-test {params.n_test} --seed {params.seed} > {log} 2>&1"


rule preprocess:
    input:
        train=config["data"]["train"],
        test=config["data"]["test"],
    output:
        train="results/data/train.parquet",
        test="results/data/test.parquet",
        report="results/data/report.json",
    params:
        script=script("preprocess.py"),
        n_folds=config["folds"]["n"],
        seed=config["folds"]["seed"],
    log:
        "results/logs/preprocess.log",
    benchmark:
        "results/benchmarks/preprocess.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../envs/data.yaml"
    shell:
        "python {params.script} --train {input.train:q} --test {input.test:q}"
        " --n-folds {params.n_folds} --seed {params.seed}"
        " --out-train {output.train} --out-test {output.test} --report {output.report} > {log} 2>&1"
