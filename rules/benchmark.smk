# Speed against the original method: `make benchmark` (snakemake benchmark --cores all --resources gpu=1).
# Not part of the default run; its table lands in results/speed/benchmark.md.


rule benchmark:
    input:
        train=config["data"]["train"],
        checkpoint=model_checkpoint(),
    output:
        json="results/speed/benchmark.json",
        table=report("results/speed/benchmark.md", category="Benchmark"),
    log:
        "results/logs/benchmark.log",
    conda:
        "../envs/model.yaml"
    # Capped by --cores; torch uses what Snakemake grants (it sets OMP_NUM_THREADS).
    threads: 8
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    params:
        settings=settings_json("model", "train", "predict", "device"),
        preprocess_source=(
            f"--preprocess-source {config['benchmark']['preprocess_source']}"
            if config["benchmark"]["preprocess_source"]
            else ""
        ),
    shell:
        "arenapref-benchmark --train {input.train:q} --checkpoint {input.checkpoint:q}"
        " --config {params.settings:q} {params.preprocess_source}"
        " --out-json {output.json} --out-md {output.table} > {log} 2>&1"
