"""Preprocessing at the competition's full size: the pipeline versus pandas with Python-literal
parsing, each in a fresh process so peak memory is its own."""

from __future__ import annotations

import ast
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

FULL_SIZE = 57_477  # rows in the competition's train.csv
TEXT_COLUMNS = ("prompt", "response_a", "response_b")


def build_table(source_csv: Path, rows: int, out_csv: Path) -> int:
    """Write `rows` rows by repeating the source's rows; each copy gets a fresh id and marked
    prompt turns, so copies are distinct rows (not duplicates to drop) with the source's text profile."""
    csv.field_size_limit(sys.maxsize)
    with open(source_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        source = list(reader)
    if not source:
        raise ValueError(f"{source_csv} has no rows to repeat")
    next_id = 1 + max((int(row["id"]) for row in source if str(row["id"]).isdigit()), default=0)
    with open(out_csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for index in range(rows):
            row = dict(source[index % len(source)])
            copy = index // len(source)
            if copy:
                row["id"] = str(next_id + index)
                try:
                    # Every turn is marked: prompt groups (rows sharing a turn) stay as in the source.
                    turns = json.loads(row["prompt"])
                    row["prompt"] = json.dumps([f"{t} (copy {copy})" if t else t for t in turns])
                except (json.JSONDecodeError, AttributeError):
                    pass  # a malformed source field stays as it is: both sides must cope with it
            writer.writerow(row)
    return rows


def pandas_literal_baseline(path: Path) -> int:
    """The notebook's preprocessing: pandas, each list parsed as a Python literal, joined, deduplicated.

    The notebook called eval on each field; ast.literal_eval parses the same text the same way without
    running it, so the comparison keeps the cost and leaves out the hazard.
    """
    import pandas as pd

    def parse(raw):
        try:
            return ast.literal_eval(raw.replace("null", "None"))
        except (ValueError, SyntaxError, AttributeError, MemoryError, RecursionError):
            return None

    # Python-object strings, as pandas 2 (the notebook's) stored them; Arrow strings reject the
    # lone surrogates that real rows contain.
    with pd.option_context("future.infer_string", False):
        frame = pd.read_csv(path)
        for column in TEXT_COLUMNS:
            frame[column] = (
                frame[column]
                .apply(parse)
                .apply(lambda turns: None if turns is None else " ".join(t or "" for t in turns))
            )
        frame = frame.dropna(subset=list(TEXT_COLUMNS)).drop_duplicates(subset=list(TEXT_COLUMNS))
        for column in TEXT_COLUMNS:
            frame[f"{column}_chars"] = frame[column].str.len()
    return len(frame)


def pipeline_preprocess(path: Path) -> int:
    from arenapref.data.preprocess import preprocess_train

    table, _report = preprocess_train(path, n_folds=5, seed=42)
    return table.height


IMPLEMENTATIONS = {"pipeline": pipeline_preprocess, "pandas_literal": pandas_literal_baseline}


def probe(name: str, path: str) -> None:
    """Run one implementation and print seconds, rows and peak memory as JSON (child process)."""
    function = IMPLEMENTATIONS[name]
    # Import the libraries first, so the memory figure of the work itself leaves them out.
    if name == "pandas_literal":
        import pandas  # noqa: F401
    else:
        import polars  # noqa: F401

        import arenapref.data.preprocess  # noqa: F401
    before = peak_rss_kb()
    start = time.perf_counter()
    rows = function(Path(path))
    seconds = time.perf_counter() - start
    peak = peak_rss_kb()
    print(
        json.dumps(
            {"rows_out": rows, "seconds": seconds, "peak_rss_mb": peak / 1024, "work_rss_mb": (peak - before) / 1024}
        )
    )


def peak_rss_kb() -> int:
    """This process's peak resident memory. /proc's VmHWM starts afresh at exec; ru_maxrss would
    carry over the peak of the (large) parent that forked this process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(name: str, path: Path) -> dict:
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if name == "pipeline":  # as the preprocess command runs it (arenapref.commands sets this)
        from arenapref.commands import POLARS_ALLOCATOR

        env.setdefault("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR)
    code = f"from arenapref.bench.preprocessing import probe; probe({name!r}, {str(path)!r})"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"preprocessing probe {name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
