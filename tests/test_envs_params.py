"""walker-params and hopper-params: spaces, reward formula, task application, determinism."""

from __future__ import annotations

import os
import warnings

import gymnasium.envs.mujoco.mujoco_env
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mql.envs
from mql.envs.rand_params import RAND_FIELDS

FAMILIES = {"walker-params": (17, 6), "hopper-params": (11, 3)}
DT = 0.004 * 4  # PEARL: timestep 0.004, frame_skip 4
ASSETS = os.path.join(os.path.dirname(gymnasium.envs.mujoco.mujoco_env.__file__), "assets")


@pytest.fixture(scope="module", params=list(FAMILIES))
def env(request):
    e = mql.envs.make(request.param, seed=0)
    yield e
    e.close()


def _model_arrays(model) -> dict[str, np.ndarray]:
    """Every numeric array field of an MjModel (base and derived), plus opt/stat scalars."""
    out = {}
    for name in dir(model):
        if name.startswith("_"):
            continue
        value = getattr(model, name)
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            out[name] = value.copy()
    out["stat.meanmass"] = np.array(model.stat.meanmass)
    out["stat.meaninertia"] = np.array(model.stat.meaninertia)
    return out


@pytest.mark.parametrize("name", list(FAMILIES))
def test_check_env_and_sizes(name):
    e = mql.envs.make(name, seed=0)
    with warnings.catch_warnings():  # unbounded observation Box, as in gymnasium's own envs
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(e, skip_render_check=True)
    obs_size, act_size = FAMILIES[name]
    assert e.observation_space.shape == (obs_size,)
    assert e.action_space.shape == (act_size,)
    np.testing.assert_array_equal(e.action_space.low, -1.0)
    np.testing.assert_array_equal(e.action_space.high, 1.0)
    assert e.model.opt.timestep == pytest.approx(0.004)
    assert e.dt == pytest.approx(DT)
    assert len(e.train_tasks) == 40 and len(e.test_tasks) == 10
    obs, _ = e.reset(seed=3)
    assert obs.shape == (obs_size,)
    e.close()


def test_reward_matches_formula(env):
    rng = np.random.default_rng(123)
    tasks = env.train_tasks[:2] + env.test_tasks[:1]
    for task in tasks:
        env.set_task(task)
        env.reset(seed=0)
        for _ in range(5):
            qpos = env.init_qpos + rng.uniform(-0.1, 0.1, env.model.nq)
            qvel = rng.uniform(-1.0, 1.0, env.model.nv)
            env.set_state(qpos, qvel)
            x_before = float(env.data.qpos[0])
            action = rng.uniform(-1.5, 1.5, env.action_space.shape).astype(np.float32)
            obs, reward, _, _, info = env.step(action)
            x_after = float(env.data.qpos[0])
            lo, hi = env.model.actuator_ctrlrange.T
            ctrl = lo + (np.clip(action.astype(np.float64), -1, 1) + 1) / 2 * (hi - lo)
            np.testing.assert_allclose(env.data.ctrl, ctrl)
            expected = (x_after - x_before) / DT + 1.0 - 1e-3 * np.sum(ctrl**2)
            assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
            terms = info["reward_forward"] + info["reward_alive"] + info["reward_ctrl"]
            assert terms == pytest.approx(reward, rel=1e-12, abs=1e-12)
            expected_obs = np.concatenate([env.data.qpos[1:], np.clip(env.data.qvel, -10, 10)])
            np.testing.assert_array_equal(obs, expected_obs)


def test_multipliers_never_compound(env):
    a, b = env.train_tasks[0], env.test_tasks[-1]
    env.set_task(a)
    first = _model_arrays(env.model)
    env.set_task(b)
    changed = _model_arrays(env.model)
    assert any(not np.array_equal(first[f], changed[f]) for f in RAND_FIELDS)
    env.set_task(a)
    again = _model_arrays(env.model)
    assert first.keys() == again.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    default = mujoco.MjModel.from_xml_path(os.path.join(ASSETS, env.xml_file))
    for f in RAND_FIELDS:
        np.testing.assert_allclose(getattr(env.model, f), getattr(default, f) * a[f], rtol=1e-12)


def test_task_values_and_shapes(env):
    shapes = env.task_shapes()
    m = env.model
    assert shapes == {
        "body_mass": (m.nbody,),
        "body_inertia": (m.nbody, 3),
        "dof_damping": (m.nv,),
        "geom_friction": (m.ngeom, 3),
    }
    all_tasks = env.train_tasks + env.test_tasks
    for f, base in RAND_FIELDS.items():
        logs = np.log(np.stack([t[f] for t in all_tasks])) / np.log(base)
        assert logs.min() >= -3.0 and logs.max() <= 3.0
        assert logs.min() < -2.0 and logs.max() > 2.0  # spans the range


def _rollout(name: str, seed: int) -> tuple[list, np.ndarray]:
    e = mql.envs.make(name, seed=seed)
    e.set_task(e.test_tasks[1])
    obs, _ = e.reset(seed=7)
    traj = [obs]
    actions = np.random.default_rng(0).uniform(-1, 1, (30, e.action_space.shape[0]))
    for a in actions:
        obs, r, term, trunc, _ = e.step(a)
        traj.append(np.append(obs, [r, term, trunc]))
        if term:
            obs, _ = e.reset(seed=8)
            traj.append(obs)
    tasks = e.train_tasks + e.test_tasks
    e.close()
    return tasks, np.concatenate(traj)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_determinism_and_seed_dependence(name):
    tasks_a, traj_a = _rollout(name, seed=5)
    tasks_b, traj_b = _rollout(name, seed=5)
    tasks_c, _ = _rollout(name, seed=6)
    for ta, tb in zip(tasks_a, tasks_b, strict=True):
        for f in RAND_FIELDS:
            np.testing.assert_array_equal(ta[f], tb[f])
    np.testing.assert_array_equal(traj_a, traj_b)
    assert not np.array_equal(tasks_a[0]["body_mass"], tasks_c[0]["body_mass"])


def test_global_rng_untouched(env):
    state = np.random.get_state()
    e = mql.envs.make(env.family, seed=1)
    e.reset(seed=0)
    e.step(np.zeros(e.action_space.shape))
    e.close()
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1])


def _step_from(e, qpos_index: int, value: float) -> bool:
    e.reset(seed=0)
    qpos = e.init_qpos.copy()
    qpos[qpos_index] = value
    e.set_state(qpos, e.init_qvel.copy())
    return e.step(np.zeros(e.action_space.shape))[2]


def test_terminations(env):
    assert not _step_from(env, 1, env.init_qpos[1])  # nominal pose
    if env.family == "walker-params":
        assert _step_from(env, 1, 0.3)  # lying down
        assert _step_from(env, 2, 1.2)  # tilted past 1 rad
    else:
        assert _step_from(env, 2, 0.5)  # tilted past 0.2 rad
        assert _step_from(env, 1, 0.5)  # below 0.7
        env.reset(seed=0)
        qvel = env.init_qvel.copy()
        qvel[3] = 1e3  # a joint velocity beyond 100
        env.set_state(env.init_qpos.copy(), qvel)
        assert env.is_terminated()


def test_truncation_at_horizon(env):
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape)
    for i in range(200):
        env.set_state(env.init_qpos.copy(), env.init_qvel.copy())  # keep it upright
        _, _, term, trunc, _ = env.step(zero)
        assert not term
        assert trunc == (i == 199)
    env.reset(seed=1)
    assert not env.step(zero)[3]


def test_wrong_task_raises(env):
    good = env.train_tasks[0]
    with pytest.raises(ValueError):
        env.set_task({"goal": np.zeros(2)})
    with pytest.raises(ValueError):
        env.set_task({k: v for k, v in good.items() if k != "dof_damping"})
    with pytest.raises(ValueError):
        env.set_task({**good, "body_mass": np.ones(len(good["body_mass"]) + 1)})
    with pytest.raises(ValueError):
        env.set_task({**good, "geom_friction": np.full_like(good["geom_friction"], np.nan)})
    env.set_task(good)
