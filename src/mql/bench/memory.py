"""Replay memory: bytes per stored transition and the peak while filling."""

from __future__ import annotations

import math
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np

from mql.offpolicy.replay import ReplayBuffer


def fill_random(buffer: ReplayBuffer, n: int, horizon: int, seed: int = 0) -> None:
    """Add `n` transitions of random episodes of `horizon` steps (a few task ids)."""
    rng = np.random.default_rng(seed)
    o, a = buffer.obs_dim, buffer.act_dim
    done = 0
    while done < n:
        t = min(horizon, n - done)
        obs = rng.normal(size=(t + 1, o)).astype(np.float32)
        buffer.add_episode(
            obs[:-1],
            rng.uniform(-1, 1, (t, a)).astype(np.float32),
            rng.normal(size=t).astype(np.float32),
            obs[1:],
            terminated=False,
            task=int(rng.integers(10)),
        )
        done += t


def replay_memory(
    obs_dim: int, act_dim: int, history_len: int, n: int = 100_000, horizon: int = 200
) -> dict[str, float]:
    """Bytes per transition and the peak traced memory while filling `n` transitions."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    rss0 = _rss_bytes()
    start = time.perf_counter()
    buffer = ReplayBuffer(n, obs_dim, act_dim, history_len)
    fill_random(buffer, n, horizon)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    rss1 = _rss_bytes()
    if not was_tracing:
        tracemalloc.stop()
    return {
        "bytes_per_transition": float(buffer.bytes_per_transition),
        "fill_peak_mb": (peak - base) / 2**20,
        "fill_rss_growth_mb": (rss1 - rss0) / 2**20 if rss0 and rss1 else math.nan,
        "fill_transitions": float(n),
        "fill_s": seconds,
        # the released code's layout: obs, action, reward, next_obs, done and two flattened
        # history windows of H (action, reward, obs) rows, float32 (REFERENCE §2)
        "released_bytes_per_transition": 4.0
        * (2 * obs_dim + act_dim + 2 + 2 * history_len * (act_dim + 1 + obs_dim)),
    }


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
