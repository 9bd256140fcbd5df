rule prepare_model:
    output:
        directory(EMBEDDED_CHECKPOINT),
    log:
        "results/logs/prepare_model.log",
    benchmark:
        "results/benchmarks/prepare_model.tsv"
    conda:
        "../envs/model.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "arenapref-prepare-model --out-dir {output} > {log} 2>&1"
