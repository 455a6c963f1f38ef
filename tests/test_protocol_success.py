"""Success rates in the protocol (families whose `info` reports "success", e.g. Meta-World): an
episode counts as a success if it touches success at any step; rates per task, over tasks and
per environment class, zero-shot and adapted, in both evaluation schedules; Meta-World's number
of adaptation episodes passed through."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
import pytest

import mql.envs
from mql.envs.base import Task, TaskFamily
from mql.evaluate import Adaptation, evaluate
from mql.rollout import SuccessFlag, run_episode, step_success


class PassBy(TaskFamily, gymnasium.Env):
    """A point on a line from 0, moved by the action; `info["success"]` is 1 on the steps
    within 0.05 of the goal. Goals below 0.5 are class "near", the others "far"."""

    family: ClassVar[str] = "test-pass-by"
    horizon: ClassVar[int] = 10
    n_train: ClassVar[int] = 4
    n_test: ClassVar[int] = 4
    varies: ClassVar[str] = "goal"
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, seed: int = 0) -> None:
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._x = 0.0
        self._init_tasks(seed)

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [{"goal": g} for g in (0.3, 0.7, 0.31, 2.0, 0.3, 0.7, 0.31, 2.0)[:n]]

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"goal": ()}

    def _apply_task(self, task: Task) -> None:
        self._goal = float(task["goal"])

    def task_class(self, task: Task) -> str:
        return "near" if float(task["goal"]) < 0.5 else "far"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._start_episode()
        self._x = 0.0
        return np.array([self._x]), {}

    def step(self, action):
        self._x += float(np.asarray(action).reshape(-1)[0])
        success = float(abs(self._x - self._goal) < 0.05)
        truncated = self._count_step()
        return (
            np.array([self._x]),
            -abs(self._x - self._goal),
            False,
            truncated,
            {"success": success},
        )


@pytest.fixture
def pass_by() -> str:
    """PassBy registered (at run time, so that collecting this module adds no family)."""
    if PassBy.family not in mql.envs.names():
        mql.envs.register(PassBy.family, PassBy)
    return PassBy.family


class Constant:
    def __init__(self, a: float) -> None:
        self.a = a

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.array([self.a], np.float32)

    def observe(self, obs, action, reward) -> None:
        pass


class Stub:
    """Zero-shot: steps of 0.1 (passes 0.3 and 0.7, within 0.01 of 0.31: hits; never reaches
    2.0 in 10 steps). Adapted: steps of 0.32 (0.32, 0.64, 0.96, ..., 1.92, 2.24: hits 0.3 and
    0.31, misses 0.7 by 0.06 and 2.0 by 0.08)."""

    adapts = True

    def __init__(self) -> None:
        self.asked: list[int | None] = []

    def zero_shot_policy(self) -> Constant:
        return Constant(0.1)

    def adapt(self, env, task, seed, episodes=None) -> Adaptation:
        self.asked.append(episodes)
        return Adaptation(Constant(0.32), new_task_steps=0, episodes=episodes or 1)


def test_step_success_any_step():
    assert step_success(None, {}) is None
    assert step_success(None, {"success": 0.0}) == 0.0
    assert step_success(0.0, {"success": 1.0}) == 1.0
    assert step_success(1.0, {"success": 0.0}) == 1.0  # once touched, the episode succeeded
    assert step_success(1.0, {}) == 1.0


def test_episode_that_touches_success_once_counts(pass_by):
    def success(env) -> float | None:
        flag = SuccessFlag()
        run_episode(env, Constant(0.1), 0, flag)
        return flag.value

    env = mql.envs.make(pass_by)
    env.set_task({"goal": 0.3})
    assert success(env) == 1.0
    assert env._x == pytest.approx(1.0)  # it ended far past the goal: the last step failed
    env.set_task({"goal": 2.0})
    assert success(env) == 0.0
    assert success(mql.envs.make("point-robot")) is None


@pytest.mark.parametrize("batched", [False, True])
def test_success_rates_per_task_class_and_split(pass_by, batched):
    env = mql.envs.make(pass_by)
    stub = Stub()
    res = evaluate(stub, env, env.test_tasks, 2, seed=0, batched=batched, adapt_episodes=10)
    assert stub.asked and set(stub.asked) == {10}  # Meta-World's 10 adaptation episodes
    by_goal = {env.test_tasks[t.task_index]["goal"]: t for t in res.tasks}
    assert [by_goal[g].zero_shot_successes for g in (0.3, 0.7, 0.31, 2.0)] == [
        [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]
    ]  # fmt: skip
    assert [by_goal[g].adapted_success for g in (0.3, 0.7, 0.31, 2.0)] == [1.0, 0.0, 1.0, 0.0]
    assert by_goal[2.0].task_class == "far" and by_goal[0.31].task_class == "near"
    summary = res.summary()
    assert summary["test/zero_shot_success"] == 0.75
    assert summary["test/adapted_success"] == 0.5
    assert summary["test/adapted_success/near"] == 1.0
    assert summary["test/adapted_success/far"] == 0.0
    assert summary["test/zero_shot_success/near"] == 1.0
    assert summary["test/zero_shot_success/far"] == 0.5
    entry = by_goal[2.0].to_dict()
    assert entry["task_class"] == "far" and entry["zero_shot_successes"] == [0.0, 0.0]
    assert entry["adapted_success"] == 0.0


@pytest.mark.parametrize("batched", [False, True])
def test_success_after_k_new_task_episodes(pass_by, batched):
    """The curve's points carry the success rate of their scored episodes: K = 0 is the
    zero-shot policy's (3 of 4 goals), K = 10 the adapted one's (the adaptation the protocol
    already made, 2 of 4), K = 3 a separate adaptation's (the stub adapts alike: 2 of 4)."""
    env = mql.envs.make(pass_by)
    stub = Stub()
    res = evaluate(
        stub, env, env.test_tasks, 2, seed=0, batched=batched, curve_episodes=(0, 3, 10),
        adapt_episodes=10,
    )  # fmt: skip
    assert stub.asked.count(3) == 4 and set(stub.asked) == {3, 10}
    by_goal = {env.test_tasks[t.task_index]["goal"]: t for t in res.tasks}
    assert [[c.success for c in by_goal[g].curve] for g in (0.3, 0.7, 0.31, 2.0)] == [
        [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
    ]  # fmt: skip
    summary = res.summary()
    assert summary["test/success_after_k0"] == 0.75
    assert summary["test/success_after_k3"] == 0.5
    assert summary["test/success_after_k10"] == 0.5
    assert by_goal[0.7].to_dict()["curve"][1] == {
        "episodes": 3, "return": by_goal[0.7].curve[1].ret, "new_task_steps": 0, "success": 0.0
    }  # fmt: skip


def test_no_success_keys_for_families_without_success():
    env = mql.envs.make("point-robot", seed=0)
    stub = Stub()
    res = evaluate(stub, env, env.test_tasks, 1, seed=0, task_indices=[0, 1], curve_episodes=(0, 2))
    assert stub.asked == [None, 2, None, 2]  # the own protocol by default, then K = 2
    assert not any("success" in k for k in res.summary())
    entry = res.tasks[0].to_dict()
    assert not any("success" in k or k == "task_class" for k in entry)
    assert not any("success" in c for c in entry["curve"])


def _tiny_mql_train_argv(run: Path, *extra: str) -> list[str]:
    """`mql train` of a tiny MQL run on point-robot (1700 steps, one evaluation at the end)."""
    from tiny import TINY

    tiny = []
    for k, v in TINY["MQLConfig"].items():
        tiny += ["--" + k.replace("_", "-"), *map(str, v if isinstance(v, tuple) else (v,))]
    return ["train", "--env", "point-robot", "--algo", "mql", "--total-steps", "1700",
            "--eval-every", "1700", "--eval-train-tasks", "0", "--eq19-updates", "2",
            "--run-dir", str(run), "--quiet", *tiny, *extra]  # fmt: skip


def test_mql_eval_metaworld_protocol(tmp_path, capsys):
    """`mql eval --protocol metaworld`: 10 adaptation episodes, 3 scored episodes, labelled."""
    import json

    from mql.cli import main as cli_main

    run = tmp_path / "run"
    assert cli_main(_tiny_mql_train_argv(run, "--eval-episodes", "1")) == 0
    capsys.readouterr()
    assert (
        cli_main(["eval", str(run), "--protocol", "metaworld", "--num-tasks", "2", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"].startswith("metaworld (10 adaptation episodes, 3 scored")
    for task in out["tasks"]:
        assert len(task["zero_shot_returns"]) == len(task["adapted_returns"]) == 3
        assert task["new_task_steps"] == 10 * 20  # 10 episodes of point-robot's 20 steps
    assert cli_main(["eval", str(run), "--protocol", "metaworld", "--episodes", "2"]) == 2
    assert "the metaworld protocol (--protocol, or the run's eval_protocol) fixes" in (
        capsys.readouterr().err
    )


def test_training_time_metaworld_protocol(tmp_path, capsys):
    """`eval_protocol = "metaworld"`: a run's own evaluations take Meta-World's 10 adaptation
    episodes and score 3; `mql eval` follows the run's protocol unless told otherwise."""
    import json

    from mql.cli import main as cli_main

    bad = _tiny_mql_train_argv(tmp_path / "bad", "--eval-protocol", "metaworld")
    assert cli_main([*bad, "--eval-episodes", "2"]) == 2
    assert "eval_protocol metaworld scores 3 episodes per task" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    run = tmp_path / "run"
    argv = _tiny_mql_train_argv(run, "--eval-protocol", "metaworld", "--eval-episodes", "3")
    assert cli_main(argv) == 0
    final = json.loads((run / "final_eval.json").read_text())
    (test,) = [r for r in final["results"] if r["split"] == "test"]
    for task in test["tasks"]:
        assert len(task["zero_shot_returns"]) == len(task["adapted_returns"]) == 3
        assert task["new_task_steps"] == 10 * 20
    capsys.readouterr()
    assert cli_main(["eval", str(run), "--num-tasks", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"].startswith("metaworld (10 adaptation episodes")
    assert out["tasks"][0]["new_task_steps"] == 200
    assert cli_main(["eval", str(run), "--protocol", "paired", "--num-tasks", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "protocol" not in out and out["tasks"][0]["new_task_steps"] == 20  # MQL's one episode
