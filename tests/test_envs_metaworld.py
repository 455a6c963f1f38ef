"""Meta-World ML1 / ML10 / ML45 task families (mql.envs.meta_world, the optional extra).

The tests that build an environment skip unless Meta-World is installed (`pip install -e
'.[metaworld]'`; CI runs them in a second environment); the family list and the one-line error
without the extra run everywhere (the error by hiding an installed Meta-World).
"""

from __future__ import annotations

import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mql.envs
from mql.cli import main
from mql.config import resolve
from mql.envs import metaworld_spec
from mql.envs.table import family_rows
from mql.errors import MissingExtraError

ML1 = "metaworld-ml1-reach"


# -- without the extra --------------------------------------------------------------------------
def test_families_listed_without_building():
    names = mql.envs.names()
    ml1 = [f"metaworld-ml1-{t}" for t in metaworld_spec.ML1_TASKS]
    assert len(ml1) == 50 and set(ml1) <= set(names)
    assert {"metaworld-ml10", "metaworld-ml45"} <= set(names)
    rows = {r["name"]: r for r in family_rows([ML1, "metaworld-ml10", "metaworld-ml45"])}
    assert (rows[ML1]["obs"], rows[ML1]["act"], rows[ML1]["horizon"]) == (39, 4, 500)
    assert (rows[ML1]["n_train"], rows[ML1]["n_test"]) == (50, 50)
    assert (rows["metaworld-ml10"]["n_train"], rows["metaworld-ml10"]["n_test"]) == (500, 250)
    assert (rows["metaworld-ml45"]["n_train"], rows["metaworld-ml45"]["n_test"]) == (2250, 250)
    assert "10 train / 5 test classes x 50 goals" in rows["metaworld-ml10"]["varies"]


@pytest.fixture
def without_metaworld(monkeypatch):
    """Meta-World hidden, as in an install without the extra."""
    monkeypatch.setitem(sys.modules, "metaworld", None)  # import metaworld -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, metaworld_spec.MODULE, raising=False)


def test_missing_extra_error(without_metaworld):
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[metaworld\]'"):
        mql.envs.make(ML1, seed=0)
    with pytest.raises(MissingExtraError):
        mql.envs.family_class("metaworld-ml10")(seed=0)  # also when built directly
    # the class and its sizes load without it (configs, presets, reports) ...
    assert mql.envs.family_class("metaworld-ml45").n_train == 2250
    assert resolve("metaworld-ml10", "rl2").hidden == 256
    # ... and the other families do not need it
    assert mql.envs.make("point-robot").family == "point-robot"


@pytest.mark.parametrize("algo", ["mql", "pearl", "rl2"])
def test_missing_extra_cli_one_line(without_metaworld, capsys, tmp_path, algo):
    run_dir = tmp_path / "run"
    argv = ["train", "--env", ML1, "--algo", algo, "--run-dir", str(run_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mql train: error: environment ")
    assert "metaworld" in err and "pip install" in err
    assert not run_dir.exists()  # refused before the run directory is made


# -- with the extra -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mw():
    return pytest.importorskip("metaworld")


@pytest.fixture(scope="module")
def ml10(mw):
    return mql.envs.make("metaworld-ml10", seed=0)


def _check_env(env):
    with warnings.catch_warnings():
        # Meta-World's own observation Box: unbounded object entries, goal fixed at 0 (hidden)
        warnings.filterwarnings("ignore", message=".*(infinity|maximum and minimum).*")
        check_env(env, skip_render_check=True)


def test_spec_matches_metaworld(mw):
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML10_V3, ML45_V3

    def short(names):
        return tuple(n.removesuffix("-v3") for n in names)

    assert short(ALL_V3_ENVIRONMENTS) == metaworld_spec.ML1_TASKS
    assert short(ML10_V3["train"]) == metaworld_spec.ML10_TRAIN
    assert short(ML10_V3["test"]) == metaworld_spec.ML10_TEST
    assert short(ML45_V3["train"]) == metaworld_spec.ML45_TRAIN
    assert short(ML45_V3["test"]) == metaworld_spec.ML45_TEST


def test_check_env_ml1(mw):
    env = mql.envs.make(ML1, seed=0)
    _check_env(env)
    assert env.observation_space.shape == (39,) and env.observation_space.dtype == np.float64
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert env.horizon == 500 and env.family == ML1


def test_check_env_ml10(ml10):
    _check_env(ml10)
    # one observation and action space across classes: step a task of every class
    seen = set()
    for task in ml10.train_tasks[::50] + ml10.test_tasks[::50]:
        ml10.set_task(task)
        obs, _ = ml10.reset(seed=0)
        assert ml10.observation_space.contains(obs)
        obs, *_ = ml10.step(ml10.action_space.sample())
        assert ml10.observation_space.contains(obs)
        np.testing.assert_array_equal(obs[-3:], 0.0)  # the goal is hidden
        seen.add(ml10.task_class(task))
    assert seen == set(metaworld_spec.ML10_TRAIN) | set(metaworld_spec.ML10_TEST)


def test_ml1_tasks_are_metaworlds(mw):
    env = mql.envs.make(ML1, seed=5)
    bench = mw.ML1("reach-v3", seed=5)
    import pickle

    for ours, theirs in ((env.train_tasks, bench.train_tasks), (env.test_tasks, bench.test_tasks)):
        assert len(ours) == len(theirs) == 50
        for task, mw_task in zip(ours, theirs, strict=True):
            assert env.task_class(task) == "reach" and mw_task.env_name == "reach-v3"
            np.testing.assert_array_equal(task["rand_vec"], pickle.loads(mw_task.data)["rand_vec"])
    train = {tuple(t["rand_vec"]) for t in env.train_tasks}
    test = {tuple(t["rand_vec"]) for t in env.test_tasks}
    assert len(train) == len(test) == 50 and not train & test  # disjoint goal sets


def test_ml10_split_and_classes(ml10):
    assert (len(ml10.train_tasks), len(ml10.test_tasks)) == (500, 250)
    train = [ml10.task_class(t) for t in ml10.train_tasks]
    test = [ml10.task_class(t) for t in ml10.test_tasks]
    assert {c: train.count(c) for c in set(train)} == dict.fromkeys(metaworld_spec.ML10_TRAIN, 50)
    assert {c: test.count(c) for c in set(test)} == dict.fromkeys(metaworld_spec.ML10_TEST, 50)
    assert ml10.train_classes == metaworld_spec.ML10_TRAIN
    assert ml10.test_classes == metaworld_spec.ML10_TEST


@pytest.mark.slow  # Meta-World samples ML45's goals in ~30-50 s; CI runs it (--run-slow)
def test_ml45_split_and_classes(mw):
    env = mql.envs.make("metaworld-ml45", seed=0)
    assert (len(env.train_tasks), len(env.test_tasks)) == (2250, 250)
    train = {env.task_class(t) for t in env.train_tasks}
    test = {env.task_class(t) for t in env.test_tasks}
    assert train == set(metaworld_spec.ML45_TRAIN) and test == set(metaworld_spec.ML45_TEST)
    assert not train & test


def _rollout(env, task, seed, steps=60):
    env.set_task(task)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in np.random.default_rng(1).uniform(-1, 1, (steps, 4)).astype(np.float32):
        obs, r, _, _, info = env.step(a)
        out += [obs, [r, info["success"]]]
    return np.concatenate(out)


def test_determinism_under_a_seed(mw):
    a, b = mql.envs.make(ML1, seed=3), mql.envs.make(ML1, seed=3)
    for ta, tb in zip(a.train_tasks + a.test_tasks, b.train_tasks + b.test_tasks, strict=True):
        np.testing.assert_array_equal(ta["rand_vec"], tb["rand_vec"])
    c = mql.envs.make(ML1, seed=4)
    assert not np.array_equal(a.test_tasks[0]["rand_vec"], c.test_tasks[0]["rand_vec"])
    np.random.seed(123)  # whatever the caller's global RNG holds
    first = _rollout(a, a.test_tasks[1], seed=7)
    np.random.seed(456)
    state = np.random.get_state()
    np.testing.assert_array_equal(first, _rollout(b, b.test_tasks[1], seed=7))
    np.testing.assert_array_equal(first, _rollout(a, a.test_tasks[1], seed=7))
    assert np.array_equal(np.random.get_state()[1], state[1])  # ... and it is left untouched


def test_global_rng_use_is_private(mw):
    """A Meta-World reset that drew from NumPy's global RNG (as with unfrozen tasks) would
    still give one start state per reset seed, and would not move the caller's global RNG."""
    env = mql.envs.make(ML1, seed=0)
    inner = env._class_env(0)
    reset = type(inner).reset

    def noisy_reset(self, seed=None, options=None):
        obs, info = reset(self, seed=seed, options=options)
        return obs + np.random.uniform(-1e-3, 1e-3, obs.shape), info

    inner.reset = noisy_reset.__get__(inner)
    np.random.seed(1)
    first = _rollout(env, env.test_tasks[0], seed=3, steps=20)
    np.random.seed(2)
    state = np.random.get_state()
    assert np.array_equal(first, _rollout(env, env.test_tasks[0], seed=3, steps=20))
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert not np.array_equal(first, _rollout(env, env.test_tasks[0], seed=4, steps=20))


def test_truncation_at_500(mw):
    env = mql.envs.make(ML1, seed=0)
    for _ in range(2):  # a reset restarts the count
        env.reset(seed=0)
        for t in range(1, 501):
            _, _, terminated, truncated, _ = env.step(np.zeros(4, np.float32))
            assert terminated is False and truncated is (t == 500)


def test_success_at_any_step_counts(mw):
    """Drive the hand to the (hidden) goal until info["success"] == 1, then away from it: the
    last step fails, the episode succeeds."""
    from mql.envs.meta_world import episode_success

    env = mql.envs.make(ML1, seed=0)
    env.set_task(env.test_tasks[0])
    obs, _ = env.reset(seed=0)
    goal = env._current._target_pos.copy()
    successes = []
    for _ in range(150):
        action = np.append(np.clip((goal - obs[:3]) * 20.0, -1, 1), 0.0).astype(np.float32)
        obs, _, _, _, info = env.step(action)
        successes.append(info["success"])
        if info["success"] == 1.0:
            break
    assert successes[-1] == 1.0
    for _ in range(30):  # away from the goal
        obs, _, _, _, info = env.step(np.array([0.0, 0.0, 1.0, 0.0], np.float32))
        successes.append(info["success"])
    assert successes[-1] == 0.0  # the last step fails ...
    assert episode_success(successes)  # ... the episode succeeds
    assert not episode_success([0.0] * 500)


def test_task_validation(ml10):
    task = dict(ml10.train_tasks[0])
    for bad in (
        {**task, "class": 15.0},  # ML10 has 15 classes
        {**task, "class": 1.5},
        {"goal": np.zeros(2)},
        {**task, "rand_vec": np.zeros(3)},
    ):
        with pytest.raises(ValueError):
            ml10.set_task(bad)
    three = next(t for t in ml10.train_tasks if ml10.task_class(t) == "door-open")
    with pytest.raises(ValueError, match="padding"):
        ml10.set_task({**three, "rand_vec": np.append(three["rand_vec"][:3], [1.0, 1.0, 1.0])})


@pytest.mark.filterwarnings("ignore:.*maximum and minimum values are equal")  # the hidden goal
def test_gymnasium_make(mw):
    env = gymnasium.make("mql/MetaWorldML1Reach-v0", seed=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (39,) and len(env.unwrapped.train_tasks) == 50


def test_readme_family_table_in_sync():
    """README's task-family table gives the numbers `mql envs` prints (the ML1 row stands for
    every metaworld-ml1-<task>)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = text.split("## Task families", 1)[1].split("```", 1)[0]
    readme = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1].isdigit():
            train, test = (int(x) for x in cells[4].split("/"))
            readme[cells[0]] = (int(cells[1]), int(cells[2]), int(cells[3]), train, test)
    rows = family_rows(list(mql.envs._FAMILIES))  # the built-in ones (tests register others)
    assert rows
    for row in rows:
        name = row["name"]
        key = "metaworld-ml1-&lt;task&gt;" if name.startswith("metaworld-ml1-") else name
        want = (row["obs"], row["act"], row["horizon"], row["n_train"], row["n_test"])
        assert readme[key] == want, name
    assert set(readme) == {
        "metaworld-ml1-&lt;task&gt;" if r["name"].startswith("metaworld-ml1-") else r["name"]
        for r in rows
    }
