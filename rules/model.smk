rule prepare_model:
    output:
        directory(EMBEDDED_CHECKPOINT),
    params:
        script=script("prepare_model.py"),
    log:
        "results/logs/prepare_model.log",
    benchmark:
        "results/benchmarks/prepare_model.tsv"
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/model.yaml"
    shell:
        "python {params.script} --out-dir {output} > {log} 2>&1"
