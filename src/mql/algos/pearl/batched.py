"""PEARL's deterministic acting for many environments at once (the batched evaluation).

`PEARLBatchPolicy` computes, for N slots each with its own z, the action PEARL's single policies
compute: tanh(mean(s, z)), in float32 (`PEARLPolicy`, the scored episodes) or in float64 then
cast (`CollectingPolicy` without noise, the adaptation's trajectories). One compiled call per
time step maps the one-observation mean over the slots (`lax.map`), so each slot's action is
its single policy's, bit for bit (tests/test_eval_batched.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from mql.algos.pearl.learner import PEARLLearner

__all__ = ["PEARLBatchPolicy", "batched_mean"]


@functools.lru_cache(maxsize=16)
def batched_mean(learner: PEARLLearner) -> Callable[..., jax.Array]:
    """jit: (policy, obs (N, obs_dim), z (N, L)) -> the pre-tanh means (N, act_dim), each the
    one-observation `policy_params` of its slot."""

    def run(policy: Any, obs: jax.Array, zs: jax.Array) -> jax.Array:
        return jax.lax.map(lambda x: learner._policy_params(policy, x[0], x[1])[0], (obs, zs))

    return jax.jit(run)


class PEARLBatchPolicy:
    """tanh(mean(s, z_n)) for slot n (a `mql.rollout.BatchPolicy`); `float64`: the tanh of the
    float64 mean, as `CollectingPolicy` computes it."""

    def __init__(
        self, learner: PEARLLearner, policy: Any, zs: np.ndarray, float64: bool = False
    ) -> None:
        self.learner, self.policy, self.float64 = learner, policy, float64
        self.zs = np.asarray(zs, np.float32)

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        mean = batched_mean(self.learner)(self.policy, np.asarray(obs, np.float32), self.zs)
        mean = np.asarray(mean, np.float64 if self.float64 else np.float32)
        return np.tanh(mean).astype(np.float32)

    def observe(
        self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, active: np.ndarray
    ) -> None:
        pass
