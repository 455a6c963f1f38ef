"""Many updates as a few compiled calls, with their metrics averaged (MQL and PEARL)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from mql.offpolicy.calls import call_sizes

__all__ = ["run_in_calls"]


def run_in_calls(
    n: int, updates_per_call: int, call: Callable[[int], Mapping[str, Any]]
) -> dict[str, float]:
    """Run `n` updates as `call(k)` for each k of `call_sizes(n, updates_per_call)`; each call
    returns its metrics (scalars, the mean over its k updates). Returns "losses/<name>": the
    mean over all `n` updates, weighting each call by k. A call whose value is not finite is
    left out of that metric's mean (a call of one update without the delayed actor step has
    no actor loss); a metric never finite is NaN."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for k in call_sizes(n, updates_per_call):
        for key, value in call(k).items():
            value = float(value)
            sums.setdefault(key, 0.0)
            counts.setdefault(key, 0)
            if math.isfinite(value):
                sums[key] += value * k
                counts[key] += k
    return {f"losses/{key}": sums[key] / counts[key] if counts[key] else math.nan for key in sums}
