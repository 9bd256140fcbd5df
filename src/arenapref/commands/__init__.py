"""The command-line programs behind the workflow's rules, installed as `arenapref-<name>`
(pyproject.toml, [project.scripts]); each module's `entry` runs its `main` with one-line errors."""

import os

# polars allocates through jemalloc, which keeps freed pages for later reuse by the thread that
# freed them; polars' worker threads then take fresh pages, and preprocessing 57,477 rows peaked at
# 1.6 times the memory it holds. Returning freed pages at once keeps the peak under the pandas
# baseline's (docs/speed.md) for a fifth more time. Read when polars loads, so set before any
# command imports it; a value the user set wins.
POLARS_ALLOCATOR = "dirty_decay_ms:0,muzzy_decay_ms:0"
os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR)
