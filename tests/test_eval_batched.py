"""The batched evaluation (all tasks together) against one task at a time.

Exactly equal: every zero-shot and new-task episode (the batched actor is bit for bit the single
one), the propensity fit, λ, ESS and β (computed from the meta-trained state), the new-task
steps, and everything of agents without a compiled multi-task program (PEARL, TD3-context).
The adapted parameters: XLA compiles the update inside the map over tasks and rounds a few
operations differently, so parameters agree within 1e-6 (measured: 1.2e-7 here, 2.2e-7 on
cheetah-vel's preset, `mql bench --eval`), hence adapted returns compared to 1e-5 relative.
`vmap` within 1e-5."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest
from tiny import tiny_config

import mql.algos.mql.batched as batched
import mql.envs
from mql.algos import registry
from mql.algos.mql.batched import plan_calls
from mql.evaluate import evaluate, periodic_evaluation
from mql.rollout import PolicyList, run_episode, run_episodes
from mql.seeds import episode_seed


def trained(algo: str, iterations: int = 2, **kw: Any):
    agent = registry.make_agent(tiny_config(algo, **kw))
    while agent.warmup_tasks_done < len(agent.train_tasks):
        agent.run_iteration()
    for _ in range(iterations):
        agent.run_iteration()
    return agent


def assert_trees_close(a: Any, b: Any, atol: float) -> None:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


def both(agent: Any, indices: list[int], **kw: Any) -> tuple[dict, dict]:
    env = agent.eval_env
    one = evaluate(agent, env, env.test_tasks, 2, 9, task_indices=indices, **kw)
    many = evaluate(agent, env, env.test_tasks, 2, 9, task_indices=indices, batched=True, **kw)
    return one.to_dict(), many.to_dict()


def assert_same_evaluation(one: dict, many: dict) -> None:
    """Equal, but adapted returns to 1e-5 relative (module docstring)."""
    assert [t["task_index"] for t in many["tasks"]] == [t["task_index"] for t in one["tasks"]]
    for a, b in zip(one["tasks"], many["tasks"], strict=True):
        assert b["zero_shot_returns"] == a["zero_shot_returns"]
        assert b["diagnostics"] == a["diagnostics"]
        assert b["new_task_steps"] == a["new_task_steps"]
        if a["adapted_returns"] is None:
            assert b["adapted_returns"] is None
        else:
            np.testing.assert_allclose(b["adapted_returns"], a["adapted_returns"], rtol=1e-5)
        assert [c["episodes"] for c in b["curve"]] == [c["episodes"] for c in a["curve"]]
        assert [c["new_task_steps"] for c in b["curve"]] == [
            c["new_task_steps"] for c in a["curve"]
        ]
        np.testing.assert_allclose(
            [c["return"] for c in b["curve"]], [c["return"] for c in a["curve"]], rtol=1e-5
        )


def test_mql_batched_evaluation_equals_one_task_at_a_time():
    # 7 eq. 19 updates in calls of 5 and 1 (updates_per_call 5), eq. 18 in one call of 3
    agent = trained("mql", eq18_updates=3, eq19_updates=7)
    one, many = both(agent, [0, 3, 4, 7], curve_episodes=(0, 1, 2))
    assert_same_evaluation(one, many)
    assert any(t["paired_difference"] != 0.0 for t in one["tasks"])  # adaptation moved them


def test_mql_adapted_parameters_equal(monkeypatch):
    agent = trained("mql", eq18_updates=3, eq19_updates=7)
    env = agent.eval_env
    tasks = [env.test_tasks[i] for i in (1, 2, 5)]
    seeds = [episode_seed(4, i) for i in range(3)]
    alone = [agent.adapt(env, t, s) for t, s in zip(tasks, seeds, strict=True)]
    envs = [mql.envs.make("point-robot", seed=0) for _ in tasks]
    # a budget of two tasks' minibatches of one update: groups of 2 and 1, one update per call
    per = batched._bytes_per_update(agent.replay, agent.cfg.eq19_batch)
    monkeypatch.setattr(batched, "STAGING_BYTES", 2 * per)
    assert plan_calls(3, per, 5, 2 * per) == (2, 1)
    together = agent.adapt_tasks(envs, tasks, seeds, axis="map")
    for a, b in zip(alone, together, strict=True):
        assert_trees_close(a.policy.state, b.policy.state, atol=1e-6)
        assert a.diagnostics == b.diagnostics and a.new_task_steps == b.new_task_steps


def test_vmap_adaptation_within_tolerance():
    """`vmap` over tasks (the accelerator form) rounds its batched matmuls differently."""
    agent = trained("mql", eq18_updates=3, eq19_updates=7)
    env = agent.eval_env
    tasks = [env.test_tasks[i] for i in (1, 2)]
    seeds = [11, 12]
    alone = [agent.adapt(env, t, s) for t, s in zip(tasks, seeds, strict=True)]
    envs = [mql.envs.make("point-robot", seed=0) for _ in tasks]
    together = agent.adapt_tasks(envs, tasks, seeds, axis="vmap")
    for a, b in zip(alone, together, strict=True):
        for x, y in zip(jax.tree_util.tree_leaves(a.policy.state.actor),
                        jax.tree_util.tree_leaves(b.policy.state.actor), strict=True):  # fmt: skip
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5)
        assert int(b.policy.state.updates) == int(a.policy.state.updates)
    with pytest.raises(ValueError, match="task axis"):
        batched.task_updates(agent.td3, "pmap")  # type: ignore[arg-type]


@pytest.mark.parametrize("algo", ["td3-context", "pearl"])
def test_other_algorithms_batched_equal(algo):
    agent = trained(algo, iterations=1)
    one, many = both(agent, [0, 2, 5], curve_episodes=(0, 1))
    assert many == one  # no compiled multi-task program: the same computations exactly


def test_periodic_evaluation_follows_eval_batched():
    agent = trained("mql", eq18_updates=2, eq19_updates=3, eval_tasks=3, eval_train_tasks=2)
    assert agent.cfg.eval_batched is False  # the default: one task at a time
    agent.cfg.eval_batched = True
    on = [r.to_dict() for r in periodic_evaluation(agent, agent.eval_env, agent.cfg, 0, False)]
    agent.cfg.eval_batched = False
    off = [r.to_dict() for r in periodic_evaluation(agent, agent.eval_env, agent.cfg, 0, False)]
    assert len(on) == len(off) == 2
    for a, b in zip(off, on, strict=True):
        assert_same_evaluation(a, b)


class Countdown:
    """A policy-free environment whose episode ends after `seed % 5 + 1` steps; reward = action."""

    family = "countdown"

    def set_task(self, task: Any) -> None:
        pass

    def reset(self, seed: int):
        self.left = seed % 5 + 1
        return np.array([float(self.left)]), {}

    def step(self, action: np.ndarray):
        self.left -= 1
        return np.array([float(self.left)]), float(action[0]), self.left == 0, False, {}


class Echo:
    """Acts obs / 2 plus the number of steps observed in this episode (a stateful policy)."""

    def reset(self) -> None:
        self.seen = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, np.float32) / 2 + self.seen

    def observe(self, obs, action, reward) -> None:
        self.seen += 1


def test_run_episodes_equals_run_episode_with_early_ends():
    seeds = [3, 7, 0, 14]
    alone = [run_episode(Countdown(), Echo(), s) for s in seeds]
    stored: list[list[int]] = [[] for _ in seeds]
    together = run_episodes(
        [Countdown() for _ in seeds],
        PolicyList([Echo() for _ in seeds]),
        seeds,
        [lambda tr, n=n: stored[n].append(tr.t) for n in range(len(seeds))],
    )
    assert together == alone
    assert [len(s) for s in stored] == [e.steps for e in alone] == [4, 3, 1, 5]
    assert all(s == list(range(len(s))) for s in stored)
    with pytest.raises(ValueError, match="as many seeds"):
        run_episodes([Countdown()], PolicyList([Echo()]), [1, 2])
