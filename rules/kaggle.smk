# Kaggle: download the data, export a notebook-ready folder, submit. None of these is part of the
# default run; `download` runs by itself when config points data.* at data/kaggle/ and the files
# are missing.


rule download:
    output:
        train="data/kaggle/train.csv",
        test="data/kaggle/test.csv",
        sample_submission="data/kaggle/sample_submission.csv",
    log:
        "results/logs/download.log",
    localrule: True  # needs the network, which compute nodes often lack
    conda:
        "../envs/data.yaml"
    params:
        out_dir=lambda wildcards, output: Path(output.train).parent,
    shell:
        "arenapref-kaggle-download --out-dir {params.out_dir} > {log} 2>&1"


rule export_kaggle:
    input:
        adapters=expand("results/folds/{name}/adapter", name=fold_adapters()),
        checkpoint=model_checkpoint(),
        metrics="results/metrics.json",
        postprocessing="results/postprocessing.json",
        features_model="results/features/model.json",
    output:
        export=directory("results/kaggle_export"),
        kernel=directory("results/kaggle_kernel"),
    log:
        "results/logs/export_kaggle.log",
    localrule: True  # fetches the wheels from PyPI
    conda:
        "../envs/model.yaml"
    params:
        settings=settings_json("model", "train", "predict", "device"),
        dataset_id=config["kaggle"]["dataset_id"],
        kernel_id=config["kaggle"]["kernel_id"],
        base_model=config["kaggle"]["base_model"],
        time_budget=config["kaggle"]["time_budget"],
        soup="--soup" if config["ensemble"]["adapters"] == "soup" else "",
        wheels=(
            f"--wheels-python {config['kaggle']['wheels_python']}"
            if config["kaggle"]["wheels_python"]
            else ""
        ),
    shell:
        "arenapref-export-kaggle --adapters {input.adapters} --checkpoint {input.checkpoint:q}"
        " --metrics {input.metrics} --postprocessing {input.postprocessing}"
        " --features-model {input.features_model} --config {params.settings:q} --dataset-id {params.dataset_id:q}"
        " --kernel-dir {output.kernel} --kernel-id {params.kernel_id:q} --base-model {params.base_model:q}"
        " --time-budget {params.time_budget:q} {params.wheels} {params.soup} --out-dir {output.export} > {log} 2>&1"


# Upload the export as a dataset, push the notebook that runs it, wait for the run (hours), submit that
# notebook version: the competition scores notebooks only. results/kaggle_kernel (kernel-metadata.json,
# run.py) is written by export_kaggle next to, not inside, the uploaded export.
rule submit:
    input:
        export="results/kaggle_export",
        kernel="results/kaggle_kernel",
        metrics="results/metrics.json",
    output:
        "results/kaggle/submission_receipt.json",
    log:
        "results/logs/submit.log",
    localrule: True  # needs the network, which compute nodes often lack
    conda:
        "../envs/data.yaml"
    shell:
        "arenapref-kaggle-submit --export-dir {input.export} --kernel-dir {input.kernel}"
        " --metrics {input.metrics} --receipt {output} > {log} 2>&1"
