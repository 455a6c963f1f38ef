"""The evaluation protocol: paired episodes, the same tasks at every evaluation, the return after
K new-task episodes, the propensity negatives as released, and `mql report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny import tiny_config

import mql.envs
from mql import stats
from mql.algos import registry
from mql.cli import main as cli_main
from mql.evaluate import Adaptation, eval_task_indices, evaluate
from mql.offpolicy.replay import ReplayBuffer


def trained(algo: str, iterations: int = 2, **kw: Any):
    agent = registry.make_agent(tiny_config(algo, **kw))
    while agent.warmup_tasks_done < len(agent.train_tasks):
        agent.run_iteration()
    for _ in range(iterations):
        agent.run_iteration()
    return agent


class NoisyStub:
    """An agent whose zero-shot and adapted policies are one and the same noisy policy: with
    paired episodes the two returns must be equal exactly, whatever the start states."""

    adapts = True

    def __init__(self, act_dim: int) -> None:
        self.act_dim = act_dim

    def zero_shot_policy(self):
        return self

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.tanh(np.asarray(obs[: self.act_dim], np.float32) * 3.0)

    def observe(self, obs, action, reward) -> None:
        pass

    def adapt(self, env, task, seed, episodes=None) -> Adaptation:
        return Adaptation(self, new_task_steps=0, episodes=1 if episodes is None else episodes)


def test_paired_episodes_give_equal_returns_for_equal_policies():
    env = mql.envs.make("point-robot", seed=3)
    res = evaluate(NoisyStub(2), env, env.test_tasks, episodes=3, seed=11, task_indices=[0, 5])
    for t in res.tasks:
        assert t.adapted_returns == t.zero_shot_returns
        assert len(set(t.zero_shot_returns)) == 3  # the episodes themselves differ
        assert t.paired_difference == 0.0
    summary = res.summary()
    assert summary["test/paired_difference"] == 0.0
    assert summary["test/paired_difference_se"] == 0.0


def test_mql_without_adaptation_updates_adapts_to_exactly_the_zero_shot_return():
    agent = trained("mql", eq18_updates=0, eq19_updates=0)
    env = agent.eval_env
    res = evaluate(agent, env, env.test_tasks, 2, seed=5, task_indices=list(range(6)))
    for t in res.tasks:
        assert t.adapted_returns == t.zero_shot_returns, t.task_index
    # with updates the adapted policy moves and the paired difference is not identically 0
    agent_upd = trained("mql", eq18_updates=3, eq19_updates=3)
    res = evaluate(agent_upd, env, env.test_tasks, 2, seed=5, task_indices=list(range(6)))
    assert any(t.paired_difference != 0.0 for t in res.tasks)


def test_adaptation_curve_points_and_new_task_steps():
    agent = trained("mql")
    env = agent.eval_env
    res = evaluate(
        agent, env, env.test_tasks, 1, seed=2, task_indices=[1, 2], curve_episodes=(0, 1, 2)
    )
    horizon = env.horizon
    for t in res.tasks:
        ks = {c.episodes: c for c in t.curve}
        assert ks[0].ret == t.zero_shot_return and ks[0].new_task_steps == 0
        assert ks[1].ret == t.adapted_return  # K = 1 is MQL's own protocol: the same adaptation
        assert (ks[1].new_task_steps, ks[2].new_task_steps) == (horizon, 2 * horizon)
    summary = res.summary()
    assert summary["test/return_after_k0"] == summary["test/zero_shot_return"]
    assert summary["test/new_task_steps_k2"] == 2 * horizon
    # an agent that does not adapt ignores the episodes: a flat curve, no new-task steps
    ctx = trained("td3-context")
    flat = evaluate(ctx, env, env.test_tasks, 1, seed=2, task_indices=[1], curve_episodes=(0, 2))
    assert [c.ret for c in flat.tasks[0].curve] == [flat.tasks[0].zero_shot_return] * 2
    assert [c.new_task_steps for c in flat.tasks[0].curve] == [0, 0]
    with pytest.raises(ValueError, match=">= 0"):
        evaluate(ctx, env, env.test_tasks, 1, seed=2, task_indices=[1], curve_episodes=(-1,))


def test_pearl_curve_uses_k_trajectories():
    agent = trained("pearl", iterations=1, adapt_episodes=2)
    env = agent.eval_env
    res = evaluate(
        agent, env, env.test_tasks, 1, seed=3, task_indices=[0], curve_episodes=(1, 2, 3)
    )
    steps = [c.new_task_steps for c in res.tasks[0].curve]
    assert steps == [env.horizon, 2 * env.horizon, 3 * env.horizon]
    assert res.tasks[0].curve[1].ret == res.tasks[0].adapted_return  # K = adapt_episodes


def test_every_evaluation_and_every_algorithm_scores_the_same_tasks():
    env = mql.envs.make("point-robot", seed=7)
    picks = []
    for algo in ("td3-context", "mql", "pearl"):
        cfg = registry.resolve("point-robot", algo, seed=7, eval_tasks=4, eval_train_tasks=3)
        picks.append(eval_task_indices(cfg, env, final=False))
    assert picks[0] == picks[1] == picks[2]
    assert len(picks[0][0]) == 4 and len(picks[0][1]) == 3
    other = registry.resolve("point-robot", "mql", seed=8, eval_tasks=4)
    assert eval_task_indices(other, mql.envs.make("point-robot", seed=8), False)[0] != picks[0][0]
    final = eval_task_indices(registry.resolve("point-robot", "mql", seed=7), env, final=True)
    assert final[0] == list(range(len(env.test_tasks)))


def test_recent_indices_per_task_hand_computed():
    b = ReplayBuffer(7, 1, 1, 2)
    for task, n in ((0, 3), (1, 2), (0, 3)):  # 8 rows into 7: the first row is overwritten
        for t in range(n):
            b.add([t], [0], 0.0, [t + 1], False, task, t)
    recent = b.recent_indices(4)
    assert {k: v.tolist() for k, v in recent.items()} == {0: [2, 5, 6, 0], 1: [3, 4]}


def test_released_negatives_come_from_each_tasks_recent_rows():
    agent = trained("mql", propensity_negatives="recent", propensity_recent=10)
    rows = agent._negatives(np.random.default_rng(0), 40)
    recent = agent.replay.recent_indices(10)
    per_task = 40 // len(recent) + 2
    assert len(rows) == per_task * len(recent)
    allowed = set(np.concatenate(list(recent.values())).tolist())
    assert set(rows.tolist()) <= allowed
    tasks = agent.replay.gather(rows).task
    assert all(np.sum(tasks == k) == per_task for k in recent)
    # the released preset uses this rule; the paper preset the whole replay
    assert registry.resolve("point-robot", "mql", "released").propensity_negatives == "recent"
    assert registry.resolve("point-robot", "mql", "paper").propensity_negatives == "replay"


# -- mql eval and mql report -------------------------------------------------------------------
def _tiny_flags(algo: str) -> list[str]:
    from tiny import TINY

    flags = []
    for k, v in TINY[registry.config_class(algo).__name__].items():
        flag = "--" + k.replace("_", "-")
        flags += [flag, *map(str, v)] if isinstance(v, tuple) else [flag, str(v)]
    return flags


def test_mql_eval_reproduces_the_runs_final_evaluation(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--env", "point-robot", "--algo", "mql", "--total-steps", "1700",
            "--eval-every", "1700", "--eval-episodes", "1", "--eval-train-tasks", "0",
            "--run-dir", str(run), "--quiet", *_tiny_flags("mql")]  # fmt: skip
    assert cli_main(argv) == 0
    final = json.loads((run / "final_eval.json").read_text())["results"][0]
    capsys.readouterr()
    assert cli_main(["eval", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["tasks"] == final["tasks"]  # the same episodes: the same numbers
    with pytest.raises(SystemExit) as empty:  # argparse: usage and a one-line error
        cli_main(["eval", str(run), "--adapt-episodes"])
    assert empty.value.code == 2
    assert cli_main(["eval", str(run), "--adapt-episodes", "1", "1"]) == 2
    assert "twice" in capsys.readouterr().err


def write_run(root: Path, algo: str, seed: int, zs: list[float], ad: list[float] | None,
              env: str = "point-robot", steps: int = 1000) -> Path:  # fmt: skip
    """A run directory with a hand-made final evaluation (one episode per task)."""
    cfg = registry.resolve(env, algo, seed=seed)
    path = root / f"{env}__{algo}__seed{seed}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    tasks = []
    for i, z in enumerate(zs):
        a = None if ad is None else ad[i]
        tasks.append({"task_index": i, "zero_shot_return": z, "adapted_return": a,
                      "paired_difference": None if a is None else a - z,
                      "new_task_steps": 0 if a is None else 20, "curve": []})  # fmt: skip
    final = {"env_steps": steps, "results": [{"split": "test", "tasks": tasks}]}
    (path / "final_eval.json").write_text(json.dumps(final))
    return path


def test_report_numbers_hand_computed(tmp_path, capsys):
    write_run(tmp_path, "td3-context", 0, [1.0, 2.0, 3.0, 4.0], None)
    write_run(tmp_path, "td3-context", 1, [3.0, 4.0, 5.0, 6.0], None)
    write_run(tmp_path, "mql", 0, [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0])
    write_run(tmp_path, "mql", 1, [3.0, 4.0, 5.0, 6.0], [3.0, 6.0, 5.0, 8.0])
    assert cli_main(["report", str(tmp_path), "--baseline", "td3-context", "--json",
                     "--resamples", "200"]) == 0  # fmt: skip
    rows = {r["algo"]: r for r in json.loads(capsys.readouterr().out)["point-robot"]}
    m, c = rows["mql"], rows["td3-context"]
    assert c["adapted"] is None and c["zero_shot"] == 3.5 and c["score"] == "zero_shot_return"
    assert m["zero_shot"] == 3.5 and m["adapted"] == pytest.approx(4.5)
    # paired differences: seed 0 all +1 (mean 1), seed 1 (0, 2, 0, 2) (mean 1): 1 ± 0
    assert m["paired_difference"] == 1.0 and m["paired_difference_se"] == 0.0
    scores = np.array([[2.0, 3.0, 4.0, 5.0], [3.0, 6.0, 5.0, 8.0]])
    assert m["iqm"] == stats.iqm(scores) == 4.25  # middle four of the eight: 3, 4, 5, 5
    base = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]])
    assert m["p_improvement"] == stats.probability_of_improvement(scores, base)
    assert c["p_improvement"] == 0.5 and m["seeds"] == [0, 1]
    assert cli_main(["report", str(tmp_path), "--baseline", "td3-context"]) == 0
    table = capsys.readouterr().out
    assert "| mql | 2 | 1000 | 3.5 | 4.5 | 1.00 ± 0.00 |" in table


def _write_periodic(path: Path, step: int, zs: list[float], ad: list[float]) -> None:
    """evals/step_<step>.json of a run made by `write_run` (one episode per task)."""
    tasks = [{"task_index": i, "zero_shot_return": z, "adapted_return": a,
              "paired_difference": a - z, "new_task_steps": 20, "curve": []}
             for i, (z, a) in enumerate(zip(zs, ad, strict=True))]  # fmt: skip
    (path / "evals").mkdir(exist_ok=True)
    detail = {"results": [{"split": "test", "tasks": tasks}]}
    (path / "evals" / f"step_{step}.json").write_text(json.dumps(detail))


def test_report_at_step_compares_runs_at_one_budget(tmp_path, capsys):
    """`--at-step N`: each run's last evaluation at or before N, periodic or final; a run with
    none is left out with a note."""
    long = write_run(tmp_path, "mql", 0, [9.0, 9.0], [10.0, 12.0], steps=200)
    _write_periodic(long, 50, [0.0, 0.0], [1.0, 1.0])
    _write_periodic(long, 100, [1.0, 3.0], [2.0, 6.0])
    _write_periodic(long, 200, [7.0, 7.0], [7.0, 7.0])  # the final evaluation wins at its step
    write_run(tmp_path, "td3-context", 0, [2.0, 4.0], None, steps=100)  # final at 100
    late = write_run(tmp_path, "mql", 1, [5.0, 5.0], [5.0, 5.0], steps=300)
    _write_periodic(late, 150, [5.0, 5.0], [5.0, 5.0])  # nothing at or before 120
    assert cli_main(["report", str(tmp_path), "--at-step", "120", "--json"]) == 0
    captured = capsys.readouterr()
    assert f"note: {late} has no evaluation at or before step 120; left out" in captured.err
    rows = {r["algo"]: r for r in json.loads(captured.out)["point-robot"]}
    assert rows["mql"]["seeds"] == [0] and rows["mql"]["env_steps"] == [100]
    assert (rows["mql"]["zero_shot"], rows["mql"]["adapted"]) == (2.0, 4.0)  # step 100's
    assert rows["td3-context"]["zero_shot"] == 3.0
    assert cli_main(["report", str(tmp_path), "--at-step", "200", "--json"]) == 0
    rows = {r["algo"]: r for r in json.loads(capsys.readouterr().out)["point-robot"]}
    # seed 0: the final evaluation at 200 (adapted 11), not evals/step_200; seed 1: step 150's
    assert rows["mql"]["env_steps"] == [150, 200] and rows["mql"]["adapted"] == (11.0 + 5.0) / 2
    assert cli_main(["report", str(tmp_path), "--at-step", "10"]) == 2
    assert "none of the 3 run(s) has an evaluation at or before step 10" in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path), "--at-step", "0"]) == 2
    assert "--at-step must be positive" in capsys.readouterr().err


def test_report_leaves_out_a_final_evaluation_superseded_by_a_resume(tmp_path, capsys):
    """A run resumed to a larger budget keeps its earlier final_eval.json until it ends: the
    report does not pass that off as the run's result (a note says why); --at-step still
    compares it at one budget."""
    write_run(tmp_path, "td3-context", 0, [2.0, 4.0], None, steps=200)
    resumed = write_run(tmp_path, "mql", 0, [1.0, 1.0], [1.0, 1.0], steps=100)
    (resumed / "eval.csv").write_text("env_steps,test/zero_shot_return\n100,1.0\n200,3.0\n")
    _write_periodic(resumed, 200, [3.0, 3.0], [5.0, 7.0])
    assert cli_main(["report", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"note: {resumed} was resumed past its final evaluation (at 100 steps; latest " in (
        captured.err
    )
    assert [r["algo"] for r in json.loads(captured.out)["point-robot"]] == ["td3-context"]
    assert cli_main(["report", str(tmp_path), "--at-step", "200", "--json"]) == 0
    rows = {r["algo"]: r for r in json.loads(capsys.readouterr().out)["point-robot"]}
    assert rows["mql"]["env_steps"] == [200] and rows["mql"]["adapted"] == 6.0


def test_report_bad_input(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "unfinished"
    cfg = registry.resolve("point-robot", "mql")
    (empty / "r").mkdir(parents=True)
    (empty / "r" / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    assert cli_main(["report", str(empty)]) == 2
    assert "no final evaluations" in capsys.readouterr().err
    mixed = tmp_path / "mixed"
    write_run(mixed, "mql", 0, [1.0, 2.0], [1.0, 2.0])
    write_run(mixed, "td3-context", 0, [1.0, 2.0, 3.0], None)
    assert cli_main(["report", str(mixed)]) == 2
    assert "different numbers of test tasks" in capsys.readouterr().err
    dup = tmp_path / "dup"
    write_run(dup / "a", "mql", 0, [1.0], [1.0])
    write_run(dup / "b", "mql", 0, [1.0], [2.0])
    assert cli_main(["report", str(dup)]) == 2
    assert "seed 0 appears twice" in capsys.readouterr().err
    assert cli_main(["report", str(mixed), "--baseline", "pearl"]) == 2
    assert "no such runs" in capsys.readouterr().err
    # two environments: one table each
    envs = tmp_path / "envs"
    write_run(envs, "mql", 0, [1.0], [2.0])
    write_run(envs, "mql", 0, [5.0], [6.0], env="sparse-point-robot")
    assert cli_main(["report", str(envs)]) == 0
    out = capsys.readouterr().out
    assert "### point-robot" in out and "### sparse-point-robot" in out
