"""Keep freed host memory in the process, so XLA's per-call buffers stop page-faulting.

Every call of a compiled update allocates its temporary and output buffers on the host (the CPU
backend) and frees them at the end. glibc's malloc serves an allocation above its mmap
threshold (at most 32 MB when it adjusts the threshold by itself) with a fresh `mmap`, and gives
it back to the kernel on `free`. The next call then faults in all those pages again, and on this
virtual machine a fault costs microseconds. For humanoid-dir, a call of one update allocated
33.5 MB that way: 8,575 page faults, 40-48 ms per update instead of 26 ms. MQL makes such calls
after every episode that ends early (`MQL._updates` runs the updates left after the full chunks
of `updates_per_call` one by one). docs/performance.md has the measurements.

`keep_freed_memory` raises glibc's mmap threshold to 256 MB and its trim threshold to 1 GB.
Buffers up to 256 MB then come from malloc's heaps, and freed memory stays there for the next
call. The price is that the process keeps its peak heap size instead of returning freed memory
to the system, as caching allocators do. `mql`'s command line calls it at start; set
``MQL_KEEP_FREED_MEMORY=0`` to leave malloc alone. Library users can call it themselves. On
other C libraries (musl, macOS) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["ENV_VAR", "keep_freed_memory"]

ENV_VAR = "MQL_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30

_applied = False


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only; AttributeError elsewhere)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module docstring), once per process.

    Returns True if they are set: now or by an earlier call. Returns False on a C library other
    than glibc, or if ``MQL_KEEP_FREED_MEMORY=0`` is set."""
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV_VAR, "1").strip() == "0":
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _applied = ok
    return ok
