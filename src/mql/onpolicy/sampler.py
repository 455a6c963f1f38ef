"""The batched on-policy sampler: every slot of an iteration stepped together, one policy call
per time step for all of them (shared by RL2, MAML-TRPO and ProMP).

```python
sampler = Sampler("cheetah-dir", task_seed=0, n_envs=100, processes=2)
traj, carry = sampler.sample(tasks, seeds, step_fn, carry)   # tasks: one per slot
```

`seeds[i, e]` is the reset seed of slot i's episode e (E = seeds.shape[1] episodes per trial);
`step_fn(carry, inputs) -> (actions, log_probs, carry)` is the policy, called once per time step
with the `PolicyInputs` of all N slots (NumPy in, NumPy out; the agents pass a jit-compiled
function). The loop runs until every slot has finished its E episodes (at most E x horizon
steps) and returns `Trajectories` (`mql.onpolicy.types`). Environment stepping is spread over
`processes` shards (`mql.onpolicy.workers`), each stepping its environments' physics on
`threads` of MuJoCo's thread pool where the family allows it (`LocomotionEnv.thread_pool_step`:
the half-cheetah families, on MuJoCo 4); the numbers depend on neither. By default (0, 0) such
a family runs in one process whose pool has a thread per core (given `processes`, the cores
are split among them), and every other family in one process per core (docs/performance.md,
"On-policy sampler", has the measurements).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import mql.envs
from mql.envs.base import Task
from mql.envs.locomotion_batch import pools
from mql.onpolicy.types import PolicyInputs, Trajectories
from mql.onpolicy.workers import ShardPool

__all__ = ["Sampler", "StepFn", "default_processes", "pools_physics"]

StepFn = Callable[[Any, PolicyInputs], tuple[np.ndarray, np.ndarray, Any]]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_processes(n_envs: int) -> int:
    """One shard per available CPU core (at most one per slot)."""
    return max(1, min(_cores(), n_envs))


def pools_physics(env_name: str) -> bool:
    """Whether `env_name`'s physics can be stepped on MuJoCo's thread pool here."""
    return pools(mql.envs.family_class(env_name))


class Sampler:
    """`n_envs` environments of `env_name` stepped as one batch (see the module docstring)."""

    def __init__(
        self,
        env_name: str,
        task_seed: int,
        n_envs: int,
        processes: int = 0,
        horizon: int = 0,
        threads: int = 0,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be positive, got {n_envs}")
        probe = mql.envs.make(env_name, seed=task_seed)
        if horizon < 0:
            raise ValueError(f"horizon must be >= 0, got {horizon}")
        self.horizon = min(horizon, int(probe.horizon)) if horizon else int(probe.horizon)
        self.obs_dim = int(np.prod(probe.observation_space.shape))
        self.act_dim = int(np.prod(probe.action_space.shape))
        probe.close()
        self.n_envs = n_envs
        if processes < 0 or threads < 0:
            raise ValueError(f"processes and threads must be >= 0, got {processes}, {threads}")
        pooled = pools_physics(env_name)
        n_proc = processes or (1 if pooled else default_processes(n_envs))
        self.threads = (threads or max(1, _cores() // n_proc)) if pooled else 0
        self.pool = ShardPool(
            env_name,
            task_seed,
            n_envs,
            self.obs_dim,
            self.act_dim,
            n_proc,
            self.horizon,
            self.threads,
        )

    @property
    def processes(self) -> int:
        return self.pool.processes

    def sample(
        self,
        tasks: list[Task],
        seeds: np.ndarray,
        step_fn: StepFn,
        carry: Any,
        task_ids: np.ndarray | None = None,
    ) -> tuple[Trajectories, Any]:
        """One trial per slot (see the module docstring); returns the data and the carry.
        `task_ids` (default 0 .. N-1) label the slots' tasks in the result."""
        n = self.n_envs
        seeds = np.asarray(seeds, np.int64)
        if len(tasks) != n or seeds.ndim != 2 or seeds.shape[0] != n or seeds.shape[1] < 1:
            raise ValueError(f"expected {n} tasks and a ({n}, episodes) array of seeds")
        rec = _Record(seeds.shape[1] * self.horizon, n, self.obs_dim, self.act_dim)
        # a NumPy policy's matrix products on one BLAS thread: OpenBLAS's threads spin after
        # each product and would take the cores from the physics (docs/performance.md)
        with threadpool_limits(limits=1, user_api="blas"):
            steps, inputs, carry = self._loop(tasks, seeds, step_fn, carry, rec)
        rec.put_next(steps, inputs)
        ids = np.arange(n) if task_ids is None else np.asarray(task_ids)
        return rec.trajectories(steps, ids.astype(np.int32)), carry

    def _loop(
        self, tasks: list[Task], seeds: np.ndarray, step_fn: StepFn, carry: Any, rec: _Record
    ) -> tuple[int, PolicyInputs, Any]:
        """Step every slot until all have ended their trials; (steps, the inputs after the
        last step, the carry)."""
        n, act_dim, buf = self.n_envs, self.act_dim, self.pool.buf
        t_max = rec.obs.shape[0]
        self.pool.start(list(tasks), seeds)
        obs = buf.next_obs.astype(np.float32)
        prev_action = np.zeros((n, act_dim), np.float32)
        prev_reward = np.zeros(n, np.float32)
        prev_done = np.zeros(n, np.float32)
        episode = np.zeros(n, np.int32)
        t_episode = np.zeros(n, np.int32)
        running = np.ones(n, bool)
        steps = 0
        for t in range(t_max):
            inputs = PolicyInputs(obs, prev_action, prev_reward, prev_done)
            actions, log_probs, carry = step_fn(carry, inputs)
            actions = np.asarray(actions, np.float32)
            buf.actions[:] = actions
            self.pool.step()
            reward = buf.reward.astype(np.float32)
            terminated, truncated = buf.terminated.copy(), buf.truncated.copy()
            ended = terminated | truncated
            rec.put(t, inputs, actions, np.asarray(log_probs, np.float32), reward, running)
            rec.terminated[t], rec.truncated[t] = terminated, truncated
            rec.final_obs[t][ended] = buf.final_obs[ended]
            rec.episode[t], rec.t_episode[t] = episode, t_episode
            steps = t + 1
            episode = episode + ended
            t_episode = np.where(ended, 0, t_episode + 1).astype(np.int32)
            running = running & ~buf.done
            obs = buf.next_obs.astype(np.float32)
            prev_action, prev_reward = actions, reward
            prev_done = ended.astype(np.float32)
            if not running.any():
                break
        return steps, PolicyInputs(obs, prev_action, prev_reward, prev_done), carry

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Record:
    """The arrays of one sampling call, filled step by step."""

    def __init__(self, t_max: int, n: int, obs_dim: int, act_dim: int) -> None:
        self.obs = np.zeros((t_max, n, obs_dim), np.float32)
        self.actions = np.zeros((t_max, n, act_dim), np.float32)
        self.log_probs = np.zeros((t_max, n), np.float32)
        self.rewards = np.zeros((t_max, n), np.float32)
        self.terminated = np.zeros((t_max, n), bool)
        self.truncated = np.zeros((t_max, n), bool)
        self.final_obs = np.zeros((t_max, n, obs_dim), np.float32)
        self.valid = np.zeros((t_max, n), bool)
        self.episode = np.zeros((t_max, n), np.int32)
        self.t_episode = np.zeros((t_max, n), np.int32)
        self.prev_action = np.zeros((t_max + 1, n, act_dim), np.float32)
        self.prev_reward = np.zeros((t_max + 1, n), np.float32)
        self.prev_done = np.zeros((t_max + 1, n), np.float32)
        self.next_obs = np.zeros((t_max + 1, n, obs_dim), np.float32)

    def put(
        self,
        t: int,
        inputs: PolicyInputs,
        actions: np.ndarray,
        log_probs: np.ndarray,
        reward: np.ndarray,
        running: np.ndarray,
    ) -> None:
        self.obs[t] = self.next_obs[t] = inputs.obs
        self.prev_action[t] = inputs.prev_action
        self.prev_reward[t] = inputs.prev_reward
        self.prev_done[t] = inputs.prev_done
        self.actions[t] = actions
        self.log_probs[t] = log_probs
        self.rewards[t] = np.where(running, reward, 0.0)
        self.valid[t] = running

    def put_next(self, t: int, inputs: PolicyInputs) -> None:
        """The inputs the policy would see after the last step (`Trajectories.inputs[T]`)."""
        self.next_obs[t] = inputs.obs
        self.prev_action[t] = inputs.prev_action
        self.prev_reward[t] = inputs.prev_reward
        self.prev_done[t] = inputs.prev_done

    def trajectories(self, steps: int, task_ids: np.ndarray) -> Trajectories:
        s = slice(0, steps)
        valid = self.valid[s]
        return Trajectories(
            obs=self.obs[s],
            actions=self.actions[s],
            log_probs=self.log_probs[s],
            rewards=self.rewards[s],
            terminated=self.terminated[s] & valid,
            truncated=self.truncated[s] & valid,
            final_obs=self.final_obs[s],
            valid=valid,
            episode=self.episode[s],
            t_episode=self.t_episode[s],
            task_ids=task_ids,
            inputs=PolicyInputs(
                self.next_obs[: steps + 1],
                self.prev_action[: steps + 1],
                self.prev_reward[: steps + 1],
                self.prev_done[: steps + 1],
            ),
        )
