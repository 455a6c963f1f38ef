"""A shard of the sampler's environments, stepped in one process (no JAX here).

A `Shard` owns `n` environments of one task family and steps them through trials of `E`
episodes: `start(tasks, seeds)` sets each environment's task and resets it from `seeds[i, 0]`;
each `step()` reads the actions from `buf.actions`, steps every environment whose trial is
still running, and writes reward, termination, truncation and the next observation into `buf`.
When an episode ends, its last observation goes to `buf.final_obs` and the environment is reset
from the trial's next seed `seeds[i, e]`, so `buf.next_obs` is the first observation of the
next episode; after the E-th episode the slot is `done` and no longer stepped. `horizon` > 0
truncates episodes after that many steps (when it is shorter than the family's own).

Families with a batched stepper (`LocomotionEnv.batch`: the cheetah and ant families) are
stepped through it, one `mj_step` per environment and the rest vectorised over the shard, or,
with `threads` >= 1 where the family allows it (the half-cheetah, on MuJoCo 4), the whole
shard's physics in one call on MuJoCo's thread pool; the others call each environment's `step`.
All give the same numbers (tests/test_envs_batch.py).

`ShardBuffers` are views of arrays that the main process reads: NumPy arrays in-process, or
views of shared memory in a worker process (`mql.onpolicy.workers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import mql.envs
from mql.envs.base import Task

__all__ = ["Shard", "ShardBuffers", "allocate"]


@dataclass
class ShardBuffers:
    """Per-slot step results (first axis: the shard's slots)."""

    actions: np.ndarray  # (n, act_dim) float64, written by the main process
    next_obs: np.ndarray  # (n, obs_dim) float64
    final_obs: np.ndarray  # (n, obs_dim) float64
    reward: np.ndarray  # (n,) float64
    terminated: np.ndarray  # (n,) bool
    truncated: np.ndarray  # (n,) bool
    done: np.ndarray  # (n,) bool: the trial has ended

    def rows(self, lo: int, hi: int) -> ShardBuffers:
        """Views of slots lo .. hi-1."""
        return ShardBuffers(*(getattr(self, f)[lo:hi] for f in FIELDS))


FIELDS = ("actions", "next_obs", "final_obs", "reward", "terminated", "truncated", "done")


def layout(n: int, obs_dim: int, act_dim: int) -> list[tuple[str, tuple[int, ...], Any]]:
    """(field, shape, dtype) of the buffers of `n` slots."""
    return [
        ("actions", (n, act_dim), np.float64),
        ("next_obs", (n, obs_dim), np.float64),
        ("final_obs", (n, obs_dim), np.float64),
        ("reward", (n,), np.float64),
        ("terminated", (n,), np.bool_),
        ("truncated", (n,), np.bool_),
        ("done", (n,), np.bool_),
    ]


def allocate(n: int, obs_dim: int, act_dim: int) -> ShardBuffers:
    """Buffers of `n` slots in ordinary memory."""
    return ShardBuffers(
        *(np.zeros(shape, dtype) for _, shape, dtype in layout(n, obs_dim, act_dim))
    )


class Shard:
    """`n` environments of family `env_name` (task sets from `task_seed`)."""

    def __init__(
        self,
        env_name: str,
        task_seed: int,
        n: int,
        buf: ShardBuffers,
        horizon: int = 0,
        threads: int = 0,
    ) -> None:
        self.envs = [mql.envs.make(env_name, seed=task_seed) for _ in range(n)]
        self.threads = threads
        self.batch_class = getattr(type(self.envs[0]), "batch", None) if self.envs else None
        self.batch: Any = None
        self.buf = buf
        self.horizon = horizon
        self.seeds = np.zeros((n, 1), np.int64)
        self.episode = np.zeros(n, np.int64)
        self.t = np.zeros(n, np.int64)

    def start(self, tasks: list[Task], seeds: np.ndarray) -> None:
        """Begin a trial in every slot: slot i runs `tasks[i]`, its episode e resets from
        `seeds[i, e]`."""
        if len(tasks) != len(self.envs) or seeds.shape[0] != len(self.envs):
            raise ValueError(f"expected {len(self.envs)} tasks and seed rows")
        self.seeds = np.asarray(seeds, np.int64)
        self.episode[:] = 0
        self.t[:] = 0
        b = self.buf
        b.done[:] = False
        b.terminated[:] = False
        b.truncated[:] = False
        b.reward[:] = 0.0
        for i, (env, task) in enumerate(zip(self.envs, tasks, strict=True)):
            env.set_task(task)
            obs, _ = env.reset(seed=int(self.seeds[i, 0]))
            b.next_obs[i] = obs
        # built after set_task: it reads each environment's task and views of its MjData
        batch_class = self.batch_class
        self.batch = batch_class(self.envs, self.threads) if batch_class is not None else None

    def step(self) -> None:
        """Step every running slot with `buf.actions` (see the module docstring)."""
        if self.batch is not None:
            self._step_batch()
            return
        b = self.buf
        for i, env in enumerate(self.envs):
            if b.done[i]:
                b.reward[i] = 0.0
                b.terminated[i] = b.truncated[i] = False
                continue
            obs, reward, terminated, truncated, _ = env.step(b.actions[i])
            self.t[i] += 1
            truncated = truncated or (self.horizon > 0 and self.t[i] >= self.horizon)
            b.reward[i] = reward
            b.terminated[i] = terminated
            b.truncated[i] = truncated and not terminated
            if terminated or truncated:
                obs = self._end_episode(i, obs)
            b.next_obs[i] = obs

    def _end_episode(self, i: int, obs: np.ndarray) -> np.ndarray:
        """Slot `i`'s episode ended with `obs`: record it, reset for the trial's next episode or
        mark the slot done; returns the slot's next observation."""
        self.buf.final_obs[i] = obs
        self.episode[i] += 1
        self.t[i] = 0
        if self.episode[i] < self.seeds.shape[1]:
            obs = self.envs[i].reset(seed=int(self.seeds[i, self.episode[i]]))[0]
            if self.batch is not None:
                self.batch.reload(i)
            return obs
        self.buf.done[i] = True
        return obs

    def _step_batch(self) -> None:
        """`step` through the family's batched stepper (the same numbers)."""
        b = self.buf
        running = ~b.done
        ids = np.flatnonzero(running)
        obs, reward, terminated, truncated = self.batch.step(ids.tolist(), b.actions)
        self.t[ids] += 1
        if self.horizon > 0:
            truncated = truncated | (self.t >= self.horizon)
        terminated = terminated & running
        truncated = truncated & running & ~terminated
        b.reward[:] = np.where(running, reward, 0.0)
        b.terminated[:] = terminated
        b.truncated[:] = truncated
        b.next_obs[ids] = obs[ids]
        for i in np.flatnonzero(terminated | truncated).tolist():
            b.next_obs[i] = self._end_episode(i, obs[i])

    def close(self) -> None:
        for env in self.envs:
            env.close()
