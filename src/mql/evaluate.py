"""The one meta-evaluation protocol every algorithm goes through.

For each task: run `episodes` episodes of the agent's zero-shot (meta-trained, not adapted)
deterministic policy, then, if the agent adapts, let it adapt on the task (it collects the
new-task data it needs itself and reports how many steps it used) and run `episodes` episodes of
the adapted policy. Returns are undiscounted sums of the environment reward, averaged over
episodes, then over tasks. Every reset seed derives from `seed`, so an evaluation is repeatable.

Labels in results and logs: `zero_shot_return` (what TD3-context reports; what the released MQL
code logged at its first and last evaluation) and `adapted_return` (what MQL reports).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from mql.algos.config_base import BaseConfig
from mql.envs.base import Task
from mql.rollout import Policy, run_episode
from mql.seeds import PERIODIC_EVAL, episode_seed

__all__ = [
    "Adaptation",
    "EvalResult",
    "MetaAgent",
    "TaskResult",
    "evaluate",
    "periodic_evaluation",
]


@dataclass
class Adaptation:
    """What an agent's adaptation to one task produced."""

    policy: Policy
    new_task_steps: int
    diagnostics: dict[str, float] = field(default_factory=dict)


class MetaAgent(Protocol):
    """What the protocol needs from an algorithm."""

    adapts: bool

    def zero_shot_policy(self) -> Policy: ...

    def adapt(self, env: Any, task: Task, seed: int) -> Adaptation: ...


@dataclass
class TaskResult:
    task_index: int
    zero_shot_return: float
    adapted_return: float | None = None
    new_task_steps: int = 0
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalResult:
    split: str
    tasks: list[TaskResult]

    @property
    def zero_shot_return(self) -> float:
        return float(np.mean([t.zero_shot_return for t in self.tasks]))

    @property
    def adapted_return(self) -> float | None:
        values = [t.adapted_return for t in self.tasks if t.adapted_return is not None]
        return float(np.mean(values)) if values else None

    def summary(self) -> dict[str, float]:
        """Flat aggregate: returns, and the mean of every diagnostic over tasks."""
        out: dict[str, float] = {f"{self.split}/zero_shot_return": self.zero_shot_return}
        if self.adapted_return is not None:
            out[f"{self.split}/adapted_return"] = self.adapted_return
            out[f"{self.split}/new_task_steps"] = float(
                np.mean([t.new_task_steps for t in self.tasks])
            )
        keys = sorted({k for t in self.tasks for k in t.diagnostics})
        for k in keys:
            out[f"{self.split}/{k}"] = float(np.mean([t.diagnostics[k] for t in self.tasks]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "summary": self.summary(),
            "tasks": [asdict(t) for t in self.tasks],
        }


def evaluate(
    agent: MetaAgent,
    env: Any,
    tasks: list[Task],
    episodes: int,
    seed: int,
    split: str = "test",
    task_indices: list[int] | None = None,
) -> EvalResult:
    """Zero-shot and (if the agent adapts) adapted returns on `tasks` (see module docstring)."""
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    indices = list(range(len(tasks))) if task_indices is None else list(task_indices)
    results = []
    zero_shot = agent.zero_shot_policy()
    for i in indices:
        env.set_task(tasks[i])
        zs = [run_episode(env, zero_shot, episode_seed(seed, i, 0, k)).ret for k in range(episodes)]
        result = TaskResult(task_index=i, zero_shot_return=float(np.mean(zs)))
        if agent.adapts:
            adaptation = agent.adapt(env, tasks[i], episode_seed(seed, i, 1))
            env.set_task(tasks[i])
            ad = [
                run_episode(env, adaptation.policy, episode_seed(seed, i, 2, k)).ret
                for k in range(episodes)
            ]
            result.adapted_return = float(np.mean(ad))
            result.new_task_steps = adaptation.new_task_steps
            result.diagnostics = dict(adaptation.diagnostics)
        results.append(result)
    return EvalResult(split=split, tasks=results)


def periodic_evaluation(
    agent: MetaAgent, env: Any, cfg: BaseConfig, index: int, final: bool
) -> list[EvalResult]:
    """The evaluation a training run logs: `cfg.eval_tasks` test tasks (`cfg.final_eval_tasks`
    if `final`; 0 means all) and `cfg.eval_train_tasks` training tasks, drawn without
    replacement by a generator seeded from (cfg.seed, evaluation index)."""
    test = env.test_tasks
    wanted = cfg.final_eval_tasks if final else cfg.eval_tasks
    n_test = len(test) if wanted == 0 else min(wanted, len(test))
    seed = episode_seed(cfg.seed, PERIODIC_EVAL, index)
    pick = np.random.default_rng(seed)
    test_idx = sorted(pick.choice(len(test), n_test, replace=False).tolist())
    results = [evaluate(agent, env, test, cfg.eval_episodes, seed, "test", test_idx)]
    if cfg.eval_train_tasks > 0:
        n_train = min(cfg.eval_train_tasks, len(env.train_tasks))
        train_idx = sorted(pick.choice(len(env.train_tasks), n_train, replace=False).tolist())
        results.append(
            evaluate(agent, env, env.train_tasks, cfg.eval_episodes, seed + 1, "train", train_idx)
        )
    return results
