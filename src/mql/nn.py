"""Flax pieces the algorithms' networks share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

__all__ = ["Initializer", "uniform"]

Initializer = Callable[..., jax.Array]


def uniform(bound: float) -> Initializer:
    """Initialiser drawing U(-bound, bound): PyTorch's default for linear and GRU weights
    (bound 1/sqrt(fan_in), MQL's networks) and rlkit's output layers (PEARL's)."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
