"""glibc's allocator set to keep tensor memory for reuse in a process that runs a model on a CPU.

By default glibc hands every block over 128 KiB its own fresh pages (mmap) and gives them back when
freed (munmap), raising that bar only after such a block is freed. A model on a CPU allocates and
frees megabytes per operator (a 2,048-token batch's MLP activations are 6 MB), so each operator's
output was written into pages the kernel had to fault in first: 1.3-1.6 million page faults and
2.3-2.5 s of system time in a pass of the embedded model over 160 rows (6.1-7.8 s in all). With
blocks up to glibc's largest bar taken from the heap, and freed memory kept rather than returned,
the same pass faults at most a few thousand times and takes 5.6-5.8 s. The process's peak is
unchanged; it keeps what it freed until it exits (each rule is its own process).

PyTorch's own CPU allocator has no cache (unlike its CUDA one); jemalloc or tcmalloc preloaded
would do the same, at the price of a library to ship and LD_PRELOAD in every rule.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap: glibc's largest allowed bar on 64-bit systems.
MMAP_THRESHOLD = 32 << 20
# Free memory at the top of the heap kept for reuse before any is returned.
TRIM_THRESHOLD = 1 << 30
# The user's own allocator settings win.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's allocator as above, once per process. False where it does not apply: not Linux,
    not glibc, or the user set allocator variables (including a preloaded allocator)."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    overridden = [name for name in USER_SETTINGS if os.environ.get(name)]
    if overridden:
        log.info("allocator: left as set by %s", ", ".join(overridden))
        return False
    libc = _glibc()
    if libc is None:
        return False
    done = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if done:
        log.info("allocator: blocks up to %d MiB from the heap, freed memory kept for reuse", MMAP_THRESHOLD >> 20)
    return done


def _glibc():
    """The process's C library when it is glibc (musl also has mallopt, which ignores these
    settings); looked up among the symbols already loaded, without searching for a library file."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc
