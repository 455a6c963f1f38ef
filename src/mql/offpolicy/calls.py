"""How `n` updates are split into compiled calls of `update_many` (MQL and PEARL).

Each compiled call runs K updates in one `lax.scan` (`updates_per_call`); each distinct K is
one executable. What is left after the full calls runs in calls of `REMAINDER_CHUNK`, then of
single updates. Episodes that end early leave such a remainder after every MQL iteration, and
a call's XLA buffers are fresh memory from the kernel, so calls of few updates cost more per
update: humanoid-dir, 41.7 ms per update at one update per call against 27.3 ms at fifty
(benchmarks/host_memory.py, docs/performance.md change 8). Splitting changes no number: K
updates in one call equal K single calls bit for bit (tests/test_mql.py, tests/test_pearl.py).
"""

from __future__ import annotations

__all__ = ["REMAINDER_CHUNK", "call_sizes", "chunk_sizes"]

REMAINDER_CHUNK = 10


def chunk_sizes(updates_per_call: int) -> tuple[int, ...]:
    """The updates per compiled call in use, largest first: `updates_per_call`, then
    `REMAINDER_CHUNK` if smaller, then 1 (one compiled executable each)."""
    sizes = {updates_per_call, min(updates_per_call, REMAINDER_CHUNK), 1}
    return tuple(sorted(sizes, reverse=True))


def call_sizes(n: int, updates_per_call: int) -> list[int]:
    """Updates per call for `n` updates, in order: each the largest of `chunk_sizes` that fits
    what is left (e.g. n = 73, updates_per_call = 50: [50, 10, 10, 1, 1, 1])."""
    sizes, out, left = chunk_sizes(updates_per_call), [], n
    while left > 0:
        k = next(size for size in sizes if size <= left)
        out.append(k)
        left -= k
    return out
