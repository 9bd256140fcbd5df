"""The command-line programs behind the workflow's rules, installed as `arenapref-<name>`
(pyproject.toml, [project.scripts]); each module's `entry` runs its `main` with one-line errors."""

import os

# polars allocates through jemalloc, which keeps freed pages for later reuse by the thread that
# freed them; polars' worker threads then take fresh pages, and preprocessing 57,477 rows peaked at
# 1.6 times the memory it holds. Returning freed pages at once keeps the peak under the pandas
# baseline's (docs/speed.md); huge pages (where the kernel offers them on request) make taking
# pages afresh cheaper, which won back most of the time returning them cost. Read when polars
# loads, so set before any command imports it; a value the user set wins.
POLARS_ALLOCATOR = "thp:always,metadata_thp:always,dirty_decay_ms:0,muzzy_decay_ms:0"
os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR)
