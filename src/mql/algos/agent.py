"""What the driver and the evaluation protocol need from an algorithm, and what agents share.

`Algorithm` is the protocol: the driver (`mql.driver`) calls `run_iteration` until
`env_steps` reaches the budget, `evaluate` every `eval_every` steps, and `state_dict` /
`load_state_dict` for checkpoints; the evaluation protocol (`mql.evaluate`) calls
`zero_shot_policy` and `adapt`.

`AgentBase` is the part every agent here repeats: the training and evaluation environments
(task sets from `task_seed`), the agent's NumPy Generator and reset seeds (`mql.seeds`), the
counters, the loop of one iteration (a warm-up task, or collect then train, with its timing
metrics), the periodic evaluation and the checkpointed counters. A subclass supplies
`warmup_task`, `collect`, `updates_after` and `train`, and its learner state as `self.state`.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

import mql.envs
from mql.algos.config_base import BaseConfig
from mql.checkpoint import as_numpy
from mql.envs.base import Task
from mql.evaluate import Adaptation, EvalResult, periodic_evaluation
from mql.rollout import Policy
from mql.seeds import TRAIN_EPISODE, agent_rng, episode_seed

__all__ = ["AgentBase", "Algorithm", "Collected"]


class Algorithm(Protocol):
    """An agent as the driver and the evaluation protocol use it."""

    cfg: BaseConfig
    env_steps: int
    eval_env: Any

    @property
    def adapts(self) -> bool: ...

    def run_iteration(self) -> dict[str, float]: ...

    def evaluate(self, index: int, final: bool = False) -> list[EvalResult]: ...

    def zero_shot_policy(self) -> Policy: ...

    def adapt(self, env: Any, task: Task, seed: int, episodes: int | None = None) -> Adaptation: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, data: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Collected(NamedTuple):
    """What one iteration's collection gathered."""

    returns: list[float]
    steps: int
    metrics: dict[str, float]


class AgentBase:
    """The shared part of the agents (see the module docstring)."""

    state: Any  # the learner's state pytree, set by the subclass

    def __init__(self, cfg: BaseConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        task_seed = cfg.seed if cfg.task_seed is None else cfg.task_seed
        self.env = mql.envs.make(cfg.env, seed=task_seed)
        self.eval_env = mql.envs.make(cfg.env, seed=task_seed)
        self.obs_dim = int(np.prod(self.env.observation_space.shape))
        self.act_dim = int(np.prod(self.env.action_space.shape))
        self.rng = agent_rng(cfg.seed)
        self.env_steps = 0
        self.episodes = 0
        self.warmup_tasks_done = 0

    @property
    def adapts(self) -> bool:
        return self.cfg.adapts

    @property
    def train_tasks(self) -> list[Task]:
        return self.env.train_tasks

    def next_episode_seed(self) -> int:
        """The reset seed of the next training episode (stream `TRAIN_EPISODE`)."""
        seed = episode_seed(self.cfg.seed, TRAIN_EPISODE, self.episodes)
        self.episodes += 1
        return seed

    # -- one iteration -------------------------------------------------------------------------
    def warmup_steps_per_task(self) -> int:
        """Steps of warm-up per training task (0: none)."""
        return 0

    def warmup_task(self, task: int) -> list[float]:
        """Warm up on training task `task`; the returns of its episodes."""
        raise NotImplementedError

    def collect(self) -> Collected:
        """One iteration's data collection."""
        raise NotImplementedError

    def updates_after(self, collected_steps: int) -> int:
        """Updates to run after collecting `collected_steps` steps."""
        raise NotImplementedError

    def train(self, n_updates: int) -> dict[str, float]:
        """`n_updates` updates; their metrics averaged."""
        raise NotImplementedError

    def run_iteration(self) -> dict[str, float]:
        """Warm-up on the next training task, or one collect-and-train iteration."""
        start = time.perf_counter()
        if self.warmup_tasks_done < len(self.train_tasks) and self.warmup_steps_per_task() > 0:
            returns = self.warmup_task(self.warmup_tasks_done)
            self.warmup_tasks_done += 1
            return {
                "train/episode_return": float(np.mean(returns)),
                "warmup": 1.0,
                "time/iteration_s": time.perf_counter() - start,
            }
        self.warmup_tasks_done = len(self.train_tasks)
        collected = self.collect()
        t_collect = time.perf_counter()
        n_updates = self.updates_after(collected.steps)
        metrics = self.train(n_updates)
        end = time.perf_counter()
        metrics["train/episode_return"] = float(np.mean(collected.returns))
        metrics.update(collected.metrics)
        metrics.update(
            {
                "train/updates": float(n_updates),
                "time/collect_s": t_collect - start,
                "time/train_s": end - t_collect,
                "time/updates_per_s": n_updates / max(end - t_collect, 1e-9),
            }
        )
        return metrics

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, index: int, final: bool = False) -> list[EvalResult]:
        """The shared protocol on `eval_tasks` test tasks (`final_eval_tasks` if `final`) and
        `eval_train_tasks` training tasks."""
        return periodic_evaluation(self, self.eval_env, self.cfg, index, final)

    def close(self) -> None:
        """Release what the agent started (worker processes); the default has none."""

    # -- checkpoints ---------------------------------------------------------------------------
    def buffers_state(self) -> dict[str, Any]:
        """The subclass's buffers as checkpoint entries."""
        return {}

    def load_buffers_state(self, data: dict[str, Any]) -> None:
        """Restore what `buffers_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: learner state, buffers, RNG, counters."""
        return {
            "train_state": as_numpy(serialization.to_state_dict(jax.device_get(self.state))),
            **self.buffers_state(),
            "rng": self.rng.bit_generator.state,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "warmup_tasks_done": self.warmup_tasks_done,
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore a `state_dict` (shapes must match this config)."""
        restored = serialization.from_state_dict(self.state, data["train_state"])
        self.state = jax.tree_util.tree_map(jnp.asarray, restored)
        self.load_buffers_state(data)
        self.rng.bit_generator.state = data["rng"]
        self.env_steps = int(data["env_steps"])
        self.episodes = int(data["episodes"])
        self.warmup_tasks_done = int(data["warmup_tasks_done"])
