"""Benchmark of the pipeline against the original notebook's method (`arenapref-benchmark`,
src/arenapref/commands/benchmark.py).

Each measurement runs both sides on the same model, rows and machine in one process, so the
ratios are comparable even where absolute figures are not.
"""
