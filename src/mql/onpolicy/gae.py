"""Generalised advantage estimation (Schulman et al. 2016) and discounted returns, as reverse
scans over time-major `(T, N)` arrays.

A *path* is what returns are summed over: an episode for MAML and ProMP, a whole trial for RL2.
`path_end[t]` marks the last step of a path; `terminated[t]` marks a step that reached a
terminal state (no value after it). A path that ends without termination (a time-limit
truncation) bootstraps from `next_values[t]`, the value of the state the step reached, so the
caller decides what that value is (a baseline's prediction at the final observation, a value
head's output on the next input). Padded steps (`valid` false) contribute nothing and get zero.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

__all__ = ["discounted_returns", "gae"]


@partial(jax.jit, static_argnames=("gamma", "lam"))
def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    path_end: jax.Array,
    valid: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """(advantages, value targets), each `(T, N)`.

    delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)
    A_t = delta_t + gamma lam (1 - path_end_t) A_{t+1};  value target_t = A_t + V(s_t).
    A terminated step is treated as a path end whether or not `path_end` says so."""
    valid = valid.astype(jnp.float32)
    term = terminated.astype(jnp.float32)
    cont = (1.0 - jnp.maximum(path_end.astype(jnp.float32), term)) * valid
    deltas = (rewards + gamma * (1.0 - term) * next_values - values) * valid

    def back(carry: jax.Array, x: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta, c = x
        adv = delta + gamma * lam * c * carry
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(rewards[0]), (deltas, cont), reverse=True)
    adv = adv * valid
    return adv, (adv + values) * valid


@partial(jax.jit, static_argnames=("gamma",))
def discounted_returns(
    rewards: jax.Array, path_end: jax.Array, valid: jax.Array, gamma: float
) -> jax.Array:
    """R_t = r_t + gamma (1 - path_end_t) R_{t+1} within each path, zero where padded
    (`(T, N)`; no bootstrapping: the targets ProMP's and rllab's linear baseline is fitted to)."""
    valid_f = jnp.asarray(valid, jnp.float32)
    cont = (1.0 - jnp.asarray(path_end, jnp.float32)) * valid_f
    rewards = jnp.asarray(rewards, jnp.float32) * valid_f

    def back(carry: jax.Array, x: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        r, c = x
        ret = r + gamma * c * carry
        return ret, ret

    _, ret = jax.lax.scan(back, jnp.zeros_like(rewards[0]), (rewards, cont), reverse=True)
    return ret * valid_f
