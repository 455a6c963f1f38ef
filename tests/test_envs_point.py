"""point-robot and sparse-point-robot, plus the family table."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mql.envs
from mql.envs.table import family_rows, format_table

POINTS = ["point-robot", "sparse-point-robot"]


@pytest.mark.parametrize("name", POINTS)
def test_check_env_and_spaces(name):
    env = mql.envs.make(name, seed=0)
    with warnings.catch_warnings():  # unbounded observation Box
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (2,)
    assert env.action_space.shape == (2,)
    assert len(env.train_tasks) == 80 and len(env.test_tasks) == 20


@pytest.mark.parametrize("name", POINTS)
def test_dense_reward_and_action_rescaling(name):
    env = mql.envs.make(name, seed=0)
    rng = np.random.default_rng(0)
    for task in env.train_tasks[:3] + env.test_tasks[:2]:
        env.set_task(task)
        s, _ = env.reset(seed=int(rng.integers(1000)))
        goal = np.asarray(task["goal"])
        for _ in range(10):
            a = rng.uniform(-2.0, 2.0, 2).astype(np.float32)
            s_next, reward, term, _, info = env.step(a)
            step = np.clip(a.astype(np.float64), -1.0, 1.0) * 0.1
            np.testing.assert_allclose(s_next, s + step, rtol=0, atol=1e-12)
            d = np.sqrt(np.sum((s_next - goal) ** 2))
            assert reward == pytest.approx(-d, abs=1e-12)
            assert not term
            if name == "sparse-point-robot":
                assert info["sparse_reward"] == pytest.approx(1.0 - d if d <= 0.2 else 0.0)
            s = s_next


def test_full_action_moves_exactly_0_1():
    env = mql.envs.make("point-robot", seed=0)
    s, _ = env.reset(seed=0)
    s2 = env.step(np.array([1.0, -1.0], dtype=np.float32))[0]
    np.testing.assert_allclose(s2 - s, [0.1, -0.1], atol=1e-12)
    s3 = env.step(np.array([5.0, 0.5], dtype=np.float32))[0]
    np.testing.assert_allclose(s3 - s2, [0.1, 0.05], atol=1e-7)


def test_sparse_reward_inside_and_outside_radius():
    env = mql.envs.make("sparse-point-robot", seed=0)
    goal = np.array([0.0, 1.0])
    env.set_task({"goal": goal})
    env.reset(seed=0)
    env._state = goal - np.array([0.0, 0.1])  # 0.1 away after a zero step
    _, reward, _, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert info["sparse_reward"] == pytest.approx(0.9)
    assert reward == pytest.approx(-0.1)
    env._state = goal - np.array([0.0, 0.25])
    _, _, _, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert info["sparse_reward"] == 0.0


def test_start_states():
    sparse = mql.envs.make("sparse-point-robot", seed=0)
    dense = mql.envs.make("point-robot", seed=0)
    starts = []
    for seed in range(5):
        np.testing.assert_array_equal(sparse.reset(seed=seed)[0], [0.0, 0.0])
        starts.append(dense.reset(seed=seed)[0])
    starts = np.array(starts)
    assert np.all(np.abs(starts) <= 1.0) and len(np.unique(starts[:, 0])) == 5


def test_sparse_goals_on_upper_half_circle():
    env = mql.envs.make("sparse-point-robot", seed=0)
    goals = np.array([t["goal"] for t in env.train_tasks + env.test_tasks])
    assert goals.shape == (100, 2)
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0, atol=1e-12)
    assert np.all(goals[:, 1] >= -1e-12)
    angles = np.sort(np.arctan2(goals[:, 1], goals[:, 0]) % (2 * np.pi))
    angles[angles > 1.5 * np.pi] -= 2 * np.pi  # the goal at angle pi may land at -pi
    angles = np.sort(angles)
    np.testing.assert_allclose(angles, np.linspace(0.0, np.pi, 100), atol=1e-9)
    # shuffled: not in angle order
    raw = np.arctan2(goals[:, 1], goals[:, 0])
    assert not np.all(np.diff(raw) > 0)


def test_dense_goals_in_square():
    env = mql.envs.make("point-robot", seed=0)
    goals = np.array([t["goal"] for t in env.train_tasks + env.test_tasks])
    assert goals.shape == (100, 2)
    assert np.all(np.abs(goals) <= 1.0)
    assert len(np.unique(goals[:, 0])) == 100


@pytest.mark.parametrize("name", POINTS)
def test_truncation_at_20(name):
    env = mql.envs.make(name, seed=0)
    env.reset(seed=0)
    for i in range(20):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        assert not term
        assert trunc == (i == 19)
    env.reset(seed=0)
    assert not env.step(np.zeros(2, dtype=np.float32))[3]


def _rollout(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    env = mql.envs.make(name, seed=seed)
    env.set_task(env.test_tasks[0])
    obs, _ = env.reset(seed=3)
    traj = [obs]
    for a in np.random.default_rng(1).uniform(-1, 1, (20, 2)).astype(np.float32):
        obs, r, *_ = env.step(a)
        traj.append(np.append(obs, r))
    goals = np.array([t["goal"] for t in env.train_tasks + env.test_tasks])
    return goals, np.concatenate(traj)


@pytest.mark.parametrize("name", POINTS)
def test_determinism_and_seed_dependence(name):
    goals_a, traj_a = _rollout(name, 4)
    goals_b, traj_b = _rollout(name, 4)
    goals_c, _ = _rollout(name, 5)
    np.testing.assert_array_equal(goals_a, goals_b)
    np.testing.assert_array_equal(traj_a, traj_b)
    assert not np.array_equal(goals_a, goals_c)


@pytest.mark.parametrize("name", POINTS)
def test_wrong_task_raises(name):
    env = mql.envs.make(name, seed=0)
    with pytest.raises(ValueError):
        env.set_task({"velocity": 1.0})
    with pytest.raises(ValueError):
        env.set_task({"goal": np.zeros(3)})
    with pytest.raises(ValueError):
        env.set_task({"goal": np.array([np.inf, 0.0])})


def test_family_table_points():
    rows = family_rows(POINTS)
    assert rows == [
        {
            "name": "point-robot",
            "obs": 2,
            "act": 2,
            "horizon": 20,
            "n_train": 80,
            "n_test": 20,
            "varies": mql.envs.family_class("point-robot").varies,
        },
        {
            "name": "sparse-point-robot",
            "obs": 2,
            "act": 2,
            "horizon": 20,
            "n_train": 80,
            "n_test": 20,
            "varies": mql.envs.family_class("sparse-point-robot").varies,
        },
    ]
    text = format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("family")
    assert "sparse-point-robot" in lines[3]


def test_family_table_all_families():
    rows = family_rows()
    assert [r["name"] for r in rows] == mql.envs.names()
    by_name = {r["name"]: r for r in rows}
    assert (by_name["walker-params"]["obs"], by_name["walker-params"]["act"]) == (17, 6)
    assert (by_name["hopper-params"]["obs"], by_name["hopper-params"]["act"]) == (11, 3)
    for row in rows:
        assert row["obs"] > 0 and row["act"] > 0 and row["horizon"] > 0
        assert row["n_train"] > 0 and row["n_test"] > 0 and row["varies"]
    assert len(format_table(rows).splitlines()) == len(rows) + 2
