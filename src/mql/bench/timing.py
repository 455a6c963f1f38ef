"""Rates measured here: the matmul peak, the ceilings of the update's shapes, timed update
calls."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mql.offpolicy.td3 import TD3, TD3State


def _median(xs: Sequence[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64))) if len(xs) else math.nan


def matmul_gflops(n: int = 1024, repeats: int = 3, dtype: Any = jnp.float32) -> float:
    """Dense n x n x n matmul throughput with JAX (GFLOP/s, best of `repeats` timed calls)."""
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), dtype)
    b = jax.random.normal(key_b, (n, n), dtype)
    f = _matmul_fn()
    return 2.0 * n**3 / best_seconds(lambda: f(a, b).block_until_ready(), repeats) / 1e9


def best_seconds(call: Callable[[], Any], repeats: int) -> float:
    """Shortest wall time of `repeats` calls of `call`, after one untimed warm-up call."""
    call()
    best = math.inf
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def mlp_chain_gflops(batch: int, width: int, layers: int = 8, repeats: int = 5) -> float:
    """Throughput of the update's dominant shape alone, with XLA: a jitted chain of `layers`
    (batch x width) @ (width x width) matmuls, each followed by ReLU (GFLOP/s, best call).

    This is the ceiling of an MLP update at this batch and width on this machine: no GRU,
    no optimiser, no elementwise losses, nothing but its largest matmuls back to back."""
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (batch, width), jnp.float32)
    ws = [
        jax.random.normal(jax.random.fold_in(key, i), (width, width)) / width**0.5
        for i in range(layers)
    ]

    @jax.jit
    def chain(x: jax.Array, ws: list[jax.Array]) -> jax.Array:
        for w in ws:
            x = jax.nn.relu(x @ w)
        return x

    best = best_seconds(lambda: chain(x, ws).block_until_ready(), repeats)
    return 2.0 * batch * width * width * layers / best / 1e9


def numpy_matmul_gflops(batch: int, width: int, repeats: int = 50) -> float:
    """The same (batch x width) @ (width x width) product with NumPy's BLAS, for comparison
    (GFLOP/s, best call): how fast this machine multiplies these shapes outside XLA."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, width), dtype=np.float32)
    b = rng.standard_normal((width, width), dtype=np.float32)
    return 2.0 * batch * width * width / best_seconds(lambda: a @ b, repeats) / 1e9


_MATMUL: list[Callable] = []


def _matmul_fn() -> Callable:
    if not _MATMUL:
        _MATMUL.append(jax.jit(jnp.matmul))
    return _MATMUL[0]


def time_updates(
    td3: TD3, state: TD3State, dev: tuple, calls: int
) -> tuple[TD3State, float, float]:
    """`calls` compiled calls of `update_many`: (state, updates/s, cores busy on average)."""
    batches, weights, anchor = dev
    k = weights.shape[0]
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        state, metrics = td3.update_many(state, batches, weights, anchor)
    jax.block_until_ready((state, metrics))
    wall = time.perf_counter() - start
    return state, calls * k / wall, (time.process_time() - cpu) / wall
