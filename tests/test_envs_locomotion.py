"""Tests of the MuJoCo locomotion families: cheetah-vel(-ood), cheetah-dir, ant-dir, ant-goal,
humanoid-dir. The reward formulas are written out here independently of the env code
(REFERENCE.md section 1) and recomputed from the MuJoCo state before and after each step."""

from __future__ import annotations

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mql.envs

FAMILIES = ["cheetah-vel", "cheetah-vel-ood", "cheetah-dir", "ant-dir", "ant-goal", "humanoid-dir"]
SIZES = {  # family -> (obs size, act size, dt)
    "cheetah-vel": (20, 6, 0.05),
    "cheetah-vel-ood": (20, 6, 0.05),
    "cheetah-dir": (20, 6, 0.05),
    "ant-dir": (27, 8, 0.05),
    "ant-goal": (113, 8, 0.05),
    "humanoid-dir": (376, 17, 0.015),
}
DRAWN = ["cheetah-vel", "cheetah-vel-ood", "ant-goal", "humanoid-dir"]


@pytest.fixture(scope="module")
def envs():
    return {name: mql.envs.make(name, seed=0) for name in FAMILIES}


def _torso_xy(env):
    return env.data.body("torso").xpos[:2].copy()


def _mass_center_xy(env):
    m, d = env.model, env.data
    com = (m.body_mass[:, None] * d.xipos).sum(axis=0) / m.body_mass.sum()
    return com[:2].copy()


def _expected_ctrl(env, action):
    lo, hi = env.model.actuator_ctrlrange[:, 0], env.model.actuator_ctrlrange[:, 1]
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return lo + (a + 1.0) / 2.0 * (hi - lo)


def _expected_obs(name, d):
    if name.startswith("cheetah"):
        return np.concatenate([d.qpos[1:], d.qvel, d.body("torso").xpos])
    if name == "ant-dir":
        return np.concatenate([d.qpos[2:], d.qvel])
    if name == "ant-goal":
        return np.concatenate([d.qpos, d.qvel, np.clip(d.cfrc_ext, -1, 1).ravel()])
    return np.concatenate(
        [d.qpos[2:], d.qvel, d.cinert.ravel(), d.cvel.ravel(), d.qfrc_actuator, d.cfrc_ext.ravel()]
    )


def _expected_reward(name, task, before, after, ctrl, cfrc_ext):
    """REFERENCE.md section 1, written out: `before`/`after` hold positions read from MuJoCo."""
    sq_ctrl = float(np.sum(ctrl**2))
    if name in ("cheetah-vel", "cheetah-vel-ood"):
        v_x = (after["x"] - before["x"]) / 0.05
        return -abs(v_x - task["velocity"]) - 0.05 * sq_ctrl
    if name == "cheetah-dir":
        v_x = (after["x"] - before["x"]) / 0.05
        return task["direction"] * v_x - 0.05 * sq_ctrl
    contact = float(np.sum(np.clip(cfrc_ext, -1.0, 1.0) ** 2))
    if name == "ant-dir":
        v_xy = (after["torso"] - before["torso"]) / 0.05
        g = task["angle"]
        return float(v_xy @ [np.cos(g), np.sin(g)]) - 0.5 * sq_ctrl - 5e-4 * contact + 1.0
    if name == "ant-goal":
        l1 = float(np.abs(after["torso"] - task["goal"]).sum())
        return -l1 - 0.1 * sq_ctrl - 5e-4 * contact
    assert name == "humanoid-dir"
    t = task["angle"]
    forward = 0.25 * float([np.cos(t), np.sin(t)] @ (after["com"] - before["com"])) / 0.003
    impact = min(5e-7 * float(np.sum(cfrc_ext**2)), 10.0)
    return forward - 0.1 * sq_ctrl - impact + 5.0


def _random_state(name, env, rng):
    qpos = env.init_qpos.copy()
    nq, nv = env.model.nq, env.model.nv
    if name.startswith("cheetah"):
        qpos += rng.uniform(-0.5, 0.5, nq)
        qvel = rng.normal(0.0, 1.0, nv)
    elif name.startswith("ant"):
        qpos[:2] += rng.uniform(-2.0, 2.0, 2)
        qpos[2] = rng.uniform(0.3, 1.1)
        quat = np.array([1.0, *rng.normal(0.0, 0.2, 3)])
        qpos[3:7] = quat / np.linalg.norm(quat)
        qpos[7:] += rng.uniform(-0.5, 0.5, nq - 7)
        qvel = rng.normal(0.0, 0.5, nv)
    else:
        qpos[:2] += rng.uniform(-1.0, 1.0, 2)
        qpos[2] = rng.uniform(0.9, 1.5)
        quat = np.array([1.0, *rng.normal(0.0, 0.1, 3)])
        qpos[3:7] = quat / np.linalg.norm(quat)
        qpos[7:] += rng.uniform(-0.2, 0.2, nq - 7)
        qvel = rng.normal(0.0, 0.3, nv)
    return qpos, qvel


def _positions(env):
    return {"x": float(env.data.qpos[0]), "torso": _torso_xy(env), "com": _mass_center_xy(env)}


# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_check_env_and_spaces(name):
    env = mql.envs.make(name, seed=0)
    check_env(env, skip_render_check=True)
    obs_size, act_size, dt = SIZES[name]
    assert env.observation_space == gymnasium.spaces.Box(-np.inf, np.inf, (obs_size,), np.float64)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (act_size,), np.float32)
    assert env.dt == pytest.approx(dt)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (obs_size,) and obs.dtype == np.float64
    assert env.family == name and env.horizon == 200
    assert len(env.train_tasks) == env.n_train and len(env.test_tasks) == env.n_test


def test_humanoid_obs_size_is_376():
    env = mql.envs.make("humanoid-dir")
    m = env.model
    assert (m.nq, m.nv, m.nbody, m.nu) == (24, 23, 14, 17)
    assert env.observation_space.shape == (376,)


def test_ant_model_constants():
    env = mql.envs.make("ant-dir")
    assert env.model.opt.timestep == 0.01 and env.frame_skip == 5
    np.testing.assert_array_equal(env.model.actuator_gear[:, 0], 150.0)


@pytest.mark.parametrize("name", FAMILIES)
def test_reward_matches_formula(name, envs):
    env = envs[name]
    rng = np.random.default_rng(123)
    tasks = env.train_tasks[:2] + env.test_tasks[:2]
    for k, task in enumerate(tasks):
        env.set_task(task)
        env.reset(seed=k)
        for _ in range(5):
            env.set_state(*_random_state(name, env, rng))
            action = rng.uniform(-1.3, 1.3, env.action_space.shape).astype(np.float32)
            before = _positions(env)
            obs, reward, terminated, truncated, info = env.step(action)
            after = _positions(env)
            ctrl = env.data.ctrl.copy()
            np.testing.assert_allclose(ctrl, _expected_ctrl(env, action), rtol=0, atol=1e-12)
            expected = _expected_reward(name, task, before, after, ctrl, env.data.cfrc_ext.copy())
            assert reward == pytest.approx(expected, rel=1e-9, abs=1e-9)
            assert isinstance(reward, float)
            np.testing.assert_array_equal(obs, _expected_obs(name, env.data))
            z = float(env.data.qpos[2])
            if name == "ant-dir":
                assert terminated == (not 0.2 <= z <= 1.0)
            elif name == "humanoid-dir":
                assert terminated == (not 1.0 <= z <= 2.0)
            else:
                assert terminated is False
            assert truncated is False
            # the reward terms in info add up to the reward
            terms = {k: v for k, v in info.items() if k.endswith(("_reward", "_bonus"))}
            costs = {k: v for k, v in info.items() if k.endswith("_cost")}
            assert "ctrl_cost" in costs
            assert sum(terms.values()) - sum(costs.values()) == pytest.approx(reward, abs=1e-9)


def test_ant_contact_forces_nonzero_in_contact():
    env = mql.envs.make("ant-goal")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    force = np.zeros(6)
    in_contact = 0
    for _ in range(100):  # MuJoCo 4.0.1: 36 steps in contact, 3.3.0: 29 (the metaworld extra)
        _, _, _, _, info = env.step(rng.uniform(-1, 1, 8))
        normal = 0.0
        for i in range(env.data.ncon):
            mujoco.mj_contactForce(env.model, env.data, i, force)
            normal += abs(force[0])
        if normal > 1e-6:
            in_contact += 1
            assert np.any(env.data.cfrc_ext != 0.0)
            assert info["contact_cost"] > 0.0
    assert in_contact > 20


@pytest.mark.parametrize("name", FAMILIES)
def test_determinism(name):
    a, b = mql.envs.make(name, seed=7), mql.envs.make(name, seed=7)
    for ta, tb in zip(a.train_tasks + a.test_tasks, b.train_tasks + b.test_tasks, strict=True):
        assert ta.keys() == tb.keys()
        for key in ta:
            np.testing.assert_array_equal(ta[key], tb[key])
    actions = np.random.default_rng(0).uniform(-1, 1, (30, *a.action_space.shape))

    def rollout(env):
        env.set_task(env.test_tasks[0])
        obs, _ = env.reset(seed=3)
        out = [obs]
        for act in actions:
            obs, rew, *_ = env.step(act)
            out += [obs, np.array([rew])]
        return np.concatenate(out)

    first = rollout(a)
    np.testing.assert_array_equal(first, rollout(b))
    np.testing.assert_array_equal(first, rollout(a))
    obs_a, _ = a.reset(seed=4)
    obs_b, _ = a.reset(seed=5)
    assert not np.array_equal(obs_a, obs_b)


def _task_values(env):
    return np.array([np.asarray(next(iter(t.values()))) for t in env.train_tasks + env.test_tasks])


@pytest.mark.parametrize("name", DRAWN)
def test_different_seeds_give_different_tasks(name):
    assert not np.array_equal(
        _task_values(mql.envs.make(name, seed=0)), _task_values(mql.envs.make(name, seed=1))
    )


def test_task_sets():
    vel = mql.envs.make("cheetah-vel", seed=0)
    v = _task_values(vel)
    assert v.shape == (130,) and np.all((v >= 0) & (v < 3.0))

    ood = mql.envs.make("cheetah-vel-ood", seed=0)
    train = np.array([t["velocity"] for t in ood.train_tasks])
    test = np.array([t["velocity"] for t in ood.test_tasks])
    assert train.shape == (100,) and test.shape == (30,)
    assert np.all(((train >= 0) & (train < 1.5)) | ((train >= 2.5) & (train < 3.0)))
    assert np.any(train < 1.5) and np.any(train >= 2.5)
    assert np.all((test >= 1.5) & (test < 2.5))

    for name, key, values in [
        ("cheetah-dir", "direction", [-1.0, 1.0]),
        ("ant-dir", "angle", [0.0, np.pi]),
    ]:
        for seed in (0, 1):
            env = mql.envs.make(name, seed=seed)
            assert [t[key] for t in env.train_tasks] == values
            assert [t[key] for t in env.test_tasks] == values

    goal = mql.envs.make("ant-goal", seed=0)
    g = _task_values(goal)
    assert g.shape == (180, 2) and np.all(np.linalg.norm(g, axis=1) <= 3.0)

    hum = mql.envs.make("humanoid-dir", seed=0)
    t = _task_values(hum)
    assert t.shape == (130,) and np.all((t >= 0) & (t < 2 * np.pi))


def test_reset_noise_ranges():
    rng_seeds = range(5)
    cheetah = mql.envs.make("cheetah-vel")
    humanoid = mql.envs.make("humanoid-dir")
    for seed in rng_seeds:
        cheetah.reset(seed=seed)
        assert np.all(np.abs(cheetah.data.qpos - cheetah.init_qpos) <= 0.1)
        humanoid.reset(seed=seed)
        assert np.all(np.abs(humanoid.data.qpos - humanoid.init_qpos) <= 0.01)
        assert np.all(np.abs(humanoid.data.qvel - humanoid.init_qvel) <= 0.01)


def _step_from(env, z, contacts=True):
    env.reset(seed=0)
    if not contacts:
        env.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
    qpos = env.init_qpos.copy()
    qpos[2] = z
    env.set_state(qpos, np.zeros(env.model.nv))
    try:
        return env.step(np.zeros(env.action_space.shape))[2]
    finally:
        env.model.opt.disableflags &= ~int(mujoco.mjtDisableBit.mjDSBL_CONTACT)


def test_terminations():
    ant = mql.envs.make("ant-dir")
    # The floor pushes a torso placed at z = 0.1 back above 0.2 within one step, so the low
    # bound is checked with contacts off.
    assert _step_from(ant, 0.1, contacts=False) is True
    assert _step_from(ant, 1.5) is True
    assert _step_from(ant, 0.75) is False

    ant_goal = mql.envs.make("ant-goal")
    assert _step_from(ant_goal, 0.1, contacts=False) is False
    assert _step_from(ant_goal, 1.5) is False

    humanoid = mql.envs.make("humanoid-dir")
    assert _step_from(humanoid, 0.5) is True
    assert _step_from(humanoid, 2.5) is True
    assert _step_from(humanoid, 1.4) is False
    humanoid.reset(seed=0)
    assert humanoid.step(np.zeros(17))[2] is False


@pytest.mark.parametrize("name", FAMILIES)
def test_truncation_at_200(name, envs):
    env = envs[name]
    for _ in range(2):  # a reset restarts the count
        env.reset(seed=0)
        zero = np.zeros(env.action_space.shape)
        for t in range(1, 201):
            truncated = env.step(zero)[3]
            assert truncated is (t == 200)


@pytest.mark.parametrize("name", FAMILIES)
def test_set_task_validation(name, envs):
    env = envs[name]
    env.set_task(env.test_tasks[-1])
    got = env.get_task()
    for key, value in env.test_tasks[-1].items():
        np.testing.assert_array_equal(got[key], value)
    with pytest.raises(ValueError):
        env.set_task({"nope": 1.0})
    with pytest.raises(ValueError):
        env.set_task([1.0])
    wrong = {"goal": np.zeros(2)} if name != "ant-goal" else {"velocity": 1.0}
    with pytest.raises(ValueError):
        env.set_task(wrong)
    key = next(iter(env.task_shapes()))
    with pytest.raises(ValueError):
        env.set_task({key: np.zeros(3)})
    with pytest.raises(ValueError):
        env.set_task({key: np.full(env.task_shapes()[key], np.nan)})


def test_make_unknown_name():
    with pytest.raises(ValueError, match=r"cheetah-vel.*humanoid-dir"):
        mql.envs.make("nope")


def test_gymnasium_make():
    env = gymnasium.make("mql/AntGoal-v0", seed=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (113,)
    assert len(env.unwrapped.train_tasks) == 150


@pytest.mark.parametrize("name", ["cheetah-vel", "ant-goal", "humanoid-dir"])
def test_lean_step_equals_gymnasium_do_simulation(name):
    """`_simulate` (no shape re-check; no `mj_rnePostConstraint` for the cheetah) and the cached
    torso id leave every number as gymnasium's `do_simulation` + `get_body_com` path does: the
    same state (warm start included) and the same observation, bit for bit, over 300 steps
    with out-of-range actions and an episode boundary."""
    lean, ref = mql.envs.make(name, seed=0), mql.envs.make(name, seed=0)
    lean.reset(seed=3)
    ref.reset(seed=3)
    rng = np.random.default_rng(0)
    for t in range(300):
        a = rng.uniform(-1.5, 1.5, size=lean.action_space.shape)
        obs, *_ = lean.step(a)
        ctrl = ref._ctrl_mid + np.clip(a, -1.0, 1.0) * ref._ctrl_half
        gymnasium.envs.mujoco.MujocoEnv.do_simulation(ref, ctrl, ref.frame_skip)
        for field in ("qpos", "qvel", "act", "qacc_warmstart", "xpos", "xipos", "ctrl"):
            np.testing.assert_array_equal(getattr(lean.data, field), getattr(ref.data, field))
        np.testing.assert_array_equal(obs, ref._get_obs())
        if name.startswith("cheetah"):
            ref_obs = np.concatenate(
                [ref.data.qpos[1:], ref.data.qvel, ref.get_body_com("torso").copy()]
            )
            np.testing.assert_array_equal(obs, ref_obs)
        else:
            np.testing.assert_array_equal(lean.data.cfrc_ext, ref.data.cfrc_ext)
        if t == 150:
            lean.reset(seed=4)
            ref.reset(seed=4)
