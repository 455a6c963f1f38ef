"""The one meta-evaluation protocol every algorithm goes through.

For each task:
1. `episodes` episodes of the agent's zero-shot (meta-trained, not adapted) policy;
2. if the agent adapts: its adaptation to the task (it collects the new-task data it needs
   itself, `agent.adapt`, and reports how many steps it used), then `episodes` episodes of the
   adapted policy;
3. for each K asked (`curve_episodes`): the return after K new-task episodes, scored the same
   way (K = 0 is the zero-shot policy; an agent that does not adapt ignores the episodes, so
   its curve is flat at its zero-shot return and uses no new-task steps).

Paired episodes (common random numbers): the k-th scored episode of every policy on a task,
zero-shot, adapted or after K episodes, starts from the same reset seed
`episode_seed(seed, i, 0, k)`, so the differences between them are the policies', not the
start states'. Each task's paired difference adapted - zero-shot (mean over its episodes) is
reported with the mean and standard error over tasks. Adaptation itself runs from
`episode_seed(seed, i, 1)`, whatever K is, so an adaptation on K episodes sees the same first
episodes as one on fewer.

Returns are undiscounted sums of the environment reward, averaged over episodes, then over
tasks. Every reset seed derives from `seed`, so an evaluation is repeatable.

Labels in results and logs: `zero_shot_return` (what TD3-context reports; what the released MQL
code logged at its first and last evaluation), `adapted_return` (what MQL reports),
`paired_difference` (adapted - zero-shot) and `paired_difference_se`, `return_after_k<K>`.
Families whose `info` reports "success" (Meta-World) add `zero_shot_success` and
`adapted_success`: the share of scored episodes with `info["success"] == 1` at some step (an
episode that touches success once counts), per task, over tasks, and per environment class
(`<split>/adapted_success/<class>`, where the tasks span several classes), and
`success_after_k<K>`, the success rate of the episodes scored after K new-task episodes.

Two schedules compute the same protocol (`batched`, a run's `eval_batched`): one task at a time
(each episode through `run_episode`, each adaptation through `agent.adapt`), or all tasks
together: the scored episodes of every task and policy stepped at once, one policy call per
time step for every environment (`rollout.run_episodes`; the agent's `batch_policy` if it has
one, else its single policies side by side), and the adaptations of all tasks in one call of
the agent's `adapt_tasks` if it has one (MQL: one compiled program for every task's eq. 18 and
eq. 19 updates), else `adapt` task by task. Each task's episodes keep their reset seeds, so the
two schedules give the same episodes; MQL's adapted parameters differ by float rounding only
(~2e-7, `mql.algos.mql.batched`), PEARL's and the others' not at all
(tests/test_eval_batched.py). A run, `mql eval` and a re-evaluation use the run's schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

import mql.envs
from mql.algos.config_base import (
    METAWORLD_ADAPT_EPISODES,
    METAWORLD_SCORED_EPISODES,
    BaseConfig,
)
from mql.envs.base import Task
from mql.rollout import (
    BatchPolicy,
    Policy,
    PolicyList,
    SuccessFlag,
    run_episode,
    run_episodes,
)
from mql.seeds import PERIODIC_EVAL, episode_seed

__all__ = [
    "METAWORLD_ADAPT_EPISODES",
    "METAWORLD_SCORED_EPISODES",
    "Adaptation",
    "BatchedAgent",
    "CurvePoint",
    "EvalResult",
    "MetaAgent",
    "TaskResult",
    "eval_task_indices",
    "evaluate",
    "evaluation_seed",
    "periodic_evaluation",
    "standard_error",
]


@dataclass
class Adaptation:
    """What an agent's adaptation to one task produced."""

    policy: Policy
    new_task_steps: int
    diagnostics: dict[str, float] = field(default_factory=dict)
    episodes: int = 1
    """New-task episodes the adaptation collected."""


class MetaAgent(Protocol):
    """What the protocol needs from an algorithm."""

    @property
    def adapts(self) -> bool: ...

    def zero_shot_policy(self) -> Policy: ...

    def adapt(self, env: Any, task: Task, seed: int, episodes: int | None = None) -> Adaptation:
        """Adapt on `episodes` new-task episodes (None: the algorithm's own protocol)."""
        ...


class BatchedAgent(MetaAgent, Protocol):
    """What an agent may add for the batched schedule (both optional, used where present)."""

    def adapt_tasks(
        self, envs: Sequence[Any], tasks: Sequence[Task], seeds: Sequence[int], episodes: int | None
    ) -> list[Adaptation]:
        """`adapt(envs[j], tasks[j], seeds[j], episodes)` for every j, computed together."""
        ...

    def batch_policy(self, policies: Sequence[Policy], repeat: int) -> BatchPolicy:
        """One `BatchPolicy` over len(policies) x `repeat` slots, slot n acting as
        policies[n // repeat] would (in a fresh episode of its own)."""
        ...


@dataclass
class CurvePoint:
    """The return after `episodes` new-task episodes (mean over the scored episodes), and the
    success rate of those episodes where the family reports success (Meta-World)."""

    episodes: int
    ret: float
    new_task_steps: int
    success: float | None = None


@dataclass
class TaskResult:
    task_index: int
    zero_shot_returns: list[float]
    """Per scored episode, in reset-seed order."""
    adapted_returns: list[float] | None = None
    """Per scored episode, paired with `zero_shot_returns` (same reset seeds)."""
    new_task_steps: int = 0
    diagnostics: dict[str, float] = field(default_factory=dict)
    curve: list[CurvePoint] = field(default_factory=list)
    zero_shot_successes: list[float] | None = None
    """Per scored episode, 1.0 if `info["success"]` was 1 at some step (families that report
    success, Meta-World); None for the others."""
    adapted_successes: list[float] | None = None
    task_class: str | None = None
    """The task's environment class, for families that have classes (`env.task_class`)."""

    @property
    def zero_shot_return(self) -> float:
        return float(np.mean(self.zero_shot_returns))

    @property
    def zero_shot_success(self) -> float | None:
        """The success rate of the zero-shot episodes (None: no success reported)."""
        return _mean_or_none(self.zero_shot_successes)

    @property
    def adapted_success(self) -> float | None:
        return _mean_or_none(self.adapted_successes)

    @property
    def adapted_return(self) -> float | None:
        return None if self.adapted_returns is None else float(np.mean(self.adapted_returns))

    @property
    def paired_difference(self) -> float | None:
        """Mean over episodes of adapted - zero-shot on the same reset seeds."""
        if self.adapted_returns is None:
            return None
        return float(np.mean(np.subtract(self.adapted_returns, self.zero_shot_returns)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_index": self.task_index,
            "zero_shot_return": self.zero_shot_return,
            "adapted_return": self.adapted_return,
            "paired_difference": self.paired_difference,
            "new_task_steps": self.new_task_steps,
            "zero_shot_returns": list(self.zero_shot_returns),
            "adapted_returns": None if self.adapted_returns is None else list(self.adapted_returns),
            "diagnostics": dict(self.diagnostics),
            **_success_entries(self),
            "curve": [_curve_entry(c) for c in self.curve],
        }


def _curve_entry(c: CurvePoint) -> dict[str, Any]:
    out: dict[str, Any] = {"episodes": c.episodes, "return": c.ret}
    out["new_task_steps"] = c.new_task_steps
    if c.success is not None:
        out["success"] = c.success
    return out


def _point(k: int, episodes: Sequence[Scored], new_task_steps: int) -> CurvePoint:
    """The curve point after k new-task episodes from the scored episodes after them."""
    return CurvePoint(
        k, float(np.mean(_returns(episodes))), new_task_steps, _mean_or_none(_successes(episodes))
    )


def _mean_or_none(values: Sequence[float] | None) -> float | None:
    return None if values is None else float(np.mean(values))


def _success_entries(task: TaskResult) -> dict[str, Any]:
    """The success keys of a task's JSON form, only where the family reports them."""
    out: dict[str, Any] = {}
    if task.task_class is not None:
        out["task_class"] = task.task_class
    for kind in ("zero_shot", "adapted"):
        values = getattr(task, f"{kind}_successes")
        if values is not None:
            out[f"{kind}_success"] = float(np.mean(values))
            out[f"{kind}_successes"] = list(values)
    return out


def standard_error(values: Sequence[float]) -> float:
    """Sample standard deviation / sqrt(n) (NaN for fewer than two values)."""
    x = np.asarray(values, np.float64)
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


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
        """Flat aggregate: returns, the paired difference and its standard error over tasks,
        the curve, and the mean of every diagnostic over tasks."""
        p = self.split
        out: dict[str, float] = {f"{p}/zero_shot_return": self.zero_shot_return}
        if self.adapted_return is not None:
            diffs = [t.paired_difference for t in self.tasks if t.paired_difference is not None]
            out[f"{p}/adapted_return"] = self.adapted_return
            out[f"{p}/paired_difference"] = float(np.mean(diffs))
            out[f"{p}/paired_difference_se"] = standard_error(diffs)
            out[f"{p}/new_task_steps"] = float(np.mean([t.new_task_steps for t in self.tasks]))
        for k in sorted({c.episodes for t in self.tasks for c in t.curve}):
            points = [c for t in self.tasks for c in t.curve if c.episodes == k]
            out[f"{p}/return_after_k{k}"] = float(np.mean([c.ret for c in points]))
            rated = [c.success for c in points if c.success is not None]
            if rated:
                out[f"{p}/success_after_k{k}"] = float(np.mean(rated))
            out[f"{p}/new_task_steps_k{k}"] = float(np.mean([c.new_task_steps for c in points]))
        keys = sorted({k for t in self.tasks for k in t.diagnostics})
        for k in keys:
            out[f"{p}/{k}"] = float(np.mean([t.diagnostics[k] for t in self.tasks]))
        out.update(self._success_summary())
        return out

    def _success_summary(self) -> dict[str, float]:
        """Success rates (where the family reports success) over tasks, zero-shot and adapted,
        and per environment class when the tasks span several."""
        p, out = self.split, {}
        classes = sorted({t.task_class for t in self.tasks if t.task_class is not None})
        for kind in ("zero_shot", "adapted"):
            rated = [t for t in self.tasks if getattr(t, f"{kind}_success") is not None]
            if not rated:
                continue
            out[f"{p}/{kind}_success"] = float(
                np.mean([getattr(t, f"{kind}_success") for t in rated])
            )
            for c in classes if len(classes) > 1 else []:
                of_c = [getattr(t, f"{kind}_success") for t in rated if t.task_class == c]
                if of_c:
                    out[f"{p}/{kind}_success/{c}"] = float(np.mean(of_c))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "summary": self.summary(),
            "tasks": [t.to_dict() for t in self.tasks],
        }


class Scored(NamedTuple):
    """A scored episode: its return, and its success where the family reports one."""

    ret: float
    success: float | None


def _score(env: Any, policy: Policy, seed: int, i: int, episodes: int) -> list[Scored]:
    """The paired episodes of `policy` on task i (reset seeds (seed, i, 0, k))."""
    out = []
    for k in range(episodes):
        flag = SuccessFlag()
        out.append(
            Scored(run_episode(env, policy, episode_seed(seed, i, 0, k), flag).ret, flag.value)
        )
    return out


def _returns(episodes: Sequence[Scored]) -> list[float]:
    return [e.ret for e in episodes]


def _successes(episodes: Sequence[Scored]) -> list[float] | None:
    """Each episode's success, or None when the environment reports none."""
    if any(e.success is None for e in episodes):
        return None
    return [float(e.success) for e in episodes]  # type: ignore[arg-type]


def _task_class(env: Any, task: Task) -> str | None:
    task_class = getattr(env, "task_class", None)
    return None if task_class is None else str(task_class(task))


def evaluate(
    agent: MetaAgent,
    env: Any,
    tasks: list[Task],
    episodes: int,
    seed: int,
    split: str = "test",
    task_indices: list[int] | None = None,
    curve_episodes: Sequence[int] = (),
    batched: bool = False,
    adapt_episodes: int | None = None,
) -> EvalResult:
    """Zero-shot, adapted and after-K-episodes returns on `tasks` (see module docstring);
    `batched`: all tasks together (the same numbers); `adapt_episodes`: new-task episodes of
    the adaptation scored as adapted (None: the algorithm's own protocol; Meta-World's
    evaluation: 10). Families that report `info["success"]` also get success rates."""
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if any(k < 0 for k in curve_episodes):
        raise ValueError(f"new-task episodes must be >= 0, got {list(curve_episodes)}")
    indices = list(range(len(tasks))) if task_indices is None else list(task_indices)
    if batched:
        return _evaluate_batched(
            agent, env, tasks, episodes, seed, split, indices, curve_episodes, adapt_episodes
        )
    results = []
    zero_shot = agent.zero_shot_policy()
    for i in indices:
        env.set_task(tasks[i])
        zero = _score(env, zero_shot, seed, i, episodes)
        result = TaskResult(
            task_index=i,
            zero_shot_returns=_returns(zero),
            zero_shot_successes=_successes(zero),
            task_class=_task_class(env, tasks[i]),
        )
        adaptation: Adaptation | None = None
        adapted_scored: list[Scored] = []
        if agent.adapts:
            adaptation = agent.adapt(
                env, tasks[i], episode_seed(seed, i, 1), episodes=adapt_episodes
            )
            env.set_task(tasks[i])
            adapted_scored = _score(env, adaptation.policy, seed, i, episodes)
            result.adapted_returns = _returns(adapted_scored)
            result.adapted_successes = _successes(adapted_scored)
            result.new_task_steps = adaptation.new_task_steps
            result.diagnostics = dict(adaptation.diagnostics)
        for k in curve_episodes:
            if k == 0 or not agent.adapts:
                point = _point(k, zero, 0)
            elif adaptation is not None and adaptation.episodes == k:
                point = _point(k, adapted_scored, result.new_task_steps)
            else:
                adapted = agent.adapt(env, tasks[i], episode_seed(seed, i, 1), episodes=k)
                env.set_task(tasks[i])
                point = _point(
                    k, _score(env, adapted.policy, seed, i, episodes), adapted.new_task_steps
                )
            result.curve.append(point)
        results.append(result)
    return EvalResult(split=split, tasks=results)


class _EnvPool:
    """`env` and as many more environments of its family as a batched evaluation steps at once
    (made once per evaluation: a few milliseconds each; each episode sets its task)."""

    def __init__(self, env: Any) -> None:
        self.envs = [env]

    def get(self, n: int) -> list[Any]:
        while len(self.envs) < n:
            self.envs.append(mql.envs.make(self.envs[0].family, seed=0))
        return self.envs[:n]


def _score_batched(
    agent: MetaAgent,
    pool: _EnvPool,
    tasks: Sequence[Task],
    policies: Callable[[], list[Policy]],
    seeds: Callable[[int, int], int],
    episodes: int,
) -> list[list[Scored]]:
    """The `episodes` paired episodes of policies()[j] on tasks[j], for every j, from
    the reset seeds `seeds(j, k)`, stepped together. With the agent's `batch_policy`, every
    episode of every task in one batch; else the agent's single policies side by side, the
    k-th episodes of all tasks in batch k (a single policy keeps one episode's state)."""
    make_batch = getattr(agent, "batch_policy", None)
    n_tasks = len(tasks)
    rounds = [list(range(episodes))] if make_batch is not None else [[k] for k in range(episodes)]
    by_slot: dict[tuple[int, int], Scored] = {}
    for ks in rounds:
        slots = [(j, k) for j in range(n_tasks) for k in ks]
        envs = pool.get(len(slots))
        for e, (j, _) in zip(envs, slots, strict=True):
            e.set_task(tasks[j])
        if make_batch is not None:
            batch = make_batch(policies(), len(ks))
        else:
            batch = PolicyList(policies())
        flags = [SuccessFlag() for _ in slots]
        done = run_episodes(envs, batch, [seeds(j, k) for j, k in slots], flags)
        for slot, episode, flag in zip(slots, done, flags, strict=True):
            by_slot[slot] = Scored(episode.ret, flag.value)
    return [[by_slot[j, k] for k in range(episodes)] for j in range(n_tasks)]


def _adapt_batched(
    agent: MetaAgent,
    pool: _EnvPool,
    tasks: Sequence[Task],
    seeds: Sequence[int],
    episodes: int | None,
) -> list[Adaptation]:
    """Every task's adaptation: the agent's `adapt_tasks` if it has one, else `adapt` each."""
    adapt_tasks = getattr(agent, "adapt_tasks", None)
    envs = pool.get(len(tasks))
    if adapt_tasks is not None:
        return adapt_tasks(envs, tasks, seeds, episodes)
    return [
        agent.adapt(e, task, s, episodes=episodes)
        for e, task, s in zip(envs, tasks, seeds, strict=True)
    ]


def _evaluate_batched(
    agent: MetaAgent,
    env: Any,
    tasks: list[Task],
    episodes: int,
    seed: int,
    split: str,
    indices: list[int],
    curve_episodes: Sequence[int],
    adapt_episodes: int | None = None,
) -> EvalResult:
    """`evaluate` with every task at once (module docstring): the same episodes, reset seeds
    and adaptations as task by task."""
    pool = _EnvPool(env)
    chosen = [tasks[i] for i in indices]
    adapt_seeds = [episode_seed(seed, i, 1) for i in indices]

    def scored(policies: Callable[[], list[Policy]]) -> list[list[Scored]]:
        return _score_batched(
            agent, pool, chosen, policies, lambda j, k: episode_seed(seed, indices[j], 0, k),
            episodes,
        )  # fmt: skip

    zero = scored(lambda: [agent.zero_shot_policy() for _ in chosen])
    results = [
        TaskResult(
            task_index=i,
            zero_shot_returns=_returns(r),
            zero_shot_successes=_successes(r),
            task_class=_task_class(env, tasks[i]),
        )
        for i, r in zip(indices, zero, strict=True)
    ]
    adaptations: list[Adaptation] = []
    adapted: list[list[Scored]] = []
    if agent.adapts and chosen:
        adaptations = _adapt_batched(agent, pool, chosen, adapt_seeds, adapt_episodes)
        adapted = scored(lambda: [a.policy for a in adaptations])
        for result, a, r in zip(results, adaptations, adapted, strict=True):
            result.adapted_returns = _returns(r)
            result.adapted_successes = _successes(r)
            result.new_task_steps = a.new_task_steps
            result.diagnostics = dict(a.diagnostics)
    for k in curve_episodes:
        if k == 0 or not agent.adapts:
            points = [_point(k, z, 0) for z in zero]
        elif adaptations and adaptations[0].episodes == k:
            points = [
                _point(k, r, a.new_task_steps) for r, a in zip(adapted, adaptations, strict=True)
            ]
        else:
            others = _adapt_batched(agent, pool, chosen, adapt_seeds, k)
            rets = scored(lambda others=others: [a.policy for a in others])
            points = [_point(k, r, a.new_task_steps) for r, a in zip(rets, others, strict=True)]
        for result, point in zip(results, points, strict=True):
            result.curve.append(point)
    return EvalResult(split=split, tasks=results)


def eval_task_indices(cfg: BaseConfig, env: Any, final: bool) -> tuple[list[int], list[int]]:
    """The test and training tasks a run evaluates: `cfg.eval_tasks` test tasks
    (`cfg.final_eval_tasks` if `final`; 0 means all) and `cfg.eval_train_tasks` training tasks,
    drawn without replacement from the task seed alone, so every evaluation of a run, and every
    algorithm on the same task seed, scores the same tasks."""
    task_seed = cfg.seed if cfg.task_seed is None else cfg.task_seed
    n_test_all, n_train_all = len(env.test_tasks), len(env.train_tasks)
    wanted = cfg.final_eval_tasks if final else cfg.eval_tasks
    n_test = n_test_all if wanted == 0 else min(wanted, n_test_all)
    pick_test = np.random.default_rng(episode_seed(task_seed, PERIODIC_EVAL, 0))
    pick_train = np.random.default_rng(episode_seed(task_seed, PERIODIC_EVAL, 1))
    test_idx = sorted(pick_test.choice(n_test_all, n_test, replace=False).tolist())
    n_train = min(cfg.eval_train_tasks, n_train_all)
    train_idx = sorted(pick_train.choice(n_train_all, n_train, replace=False).tolist())
    return test_idx, train_idx


def evaluation_seed(cfg: BaseConfig) -> int:
    """The root of a run's evaluation episodes: the same at every evaluation of the run (and
    for `mql eval`), so its curve points differ by the policy, not by the start states."""
    return episode_seed(cfg.seed, PERIODIC_EVAL)


def periodic_evaluation(
    agent: MetaAgent, env: Any, cfg: BaseConfig, index: int, final: bool
) -> list[EvalResult]:
    """The evaluation a training run logs (`eval_task_indices`, `evaluation_seed`), with the
    return after `cfg.eval_adapt_episodes` new-task episodes, under `cfg.eval_protocol` (with
    "metaworld", every adaptation takes Meta-World's 10 episodes). `index` (the evaluation's
    number) selects nothing: every evaluation of a run scores the same tasks and episodes."""
    del index
    test_idx, train_idx = eval_task_indices(cfg, env, final)
    seed = evaluation_seed(cfg)
    adapt = METAWORLD_ADAPT_EPISODES if cfg.eval_protocol == "metaworld" else None
    splits = [("test", env.test_tasks, test_idx, seed)]
    if train_idx:
        splits.append(("train", env.train_tasks, train_idx, seed + 1))
    return [
        evaluate(
            agent,
            env,
            tasks,
            cfg.eval_episodes,
            split_seed,
            split,
            idx,
            cfg.eval_adapt_episodes,
            cfg.eval_batched,
            adapt,
        )
        for split, tasks, idx, split_seed in splits
    ]


def merged_summary(parts: Iterable[dict[str, float]]) -> dict[str, float]:
    """One flat summary of the splits' summaries (test/..., train/...)."""
    out: dict[str, float] = {}
    for p in parts:
        out.update(p)
    return out
