"""The batched on-policy sampler: equal to stepping the environments one by one, the same with
one process or two, trial bookkeeping (episode boundaries, terminations, truncation at a
shorter horizon, padding) and a worker's failure as one line."""

from __future__ import annotations

import numpy as np
import pytest

import mql.envs
from mql.onpolicy.numpy_step import features
from mql.onpolicy.sampler import Sampler, default_processes, pools_physics
from mql.onpolicy.types import PolicyInputs
from mql.onpolicy.workers import SamplerError, split


def _linear_policy(obs_dim: int, act_dim: int, seed: int = 0):
    """A deterministic policy of all four inputs, so any bookkeeping error changes actions."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(obs_dim + act_dim + 2, act_dim)) * 0.5

    def act(inputs: PolicyInputs) -> np.ndarray:
        # beyond [-1, 1]: the env clips
        return np.tanh(features(inputs) @ w).astype(np.float32) * 1.5

    def step_fn(carry, inputs):
        actions = act(inputs)
        return actions, actions.sum(axis=1), carry + 1

    return act, step_fn


def _one_by_one(env_name, tasks, seeds, act, horizon=0):
    """Each slot's trial stepped on its own env, the policy called with a batch of one."""
    out = []
    for task, row in zip(tasks, seeds, strict=True):
        env = mql.envs.make(env_name, seed=0)
        env.set_task(task)
        steps = []
        prev_a = np.zeros(env.action_space.shape, np.float32)
        prev_r, prev_d = 0.0, 0.0
        for s in row:
            obs, _ = env.reset(seed=int(s))
            t = 0
            while True:
                inp = PolicyInputs(
                    obs[None].astype(np.float32),
                    prev_a[None],
                    np.array([prev_r], np.float32),
                    np.array([prev_d], np.float32),
                )
                a = act(inp)[0]
                nxt, r, term, trunc, _ = env.step(a)
                t += 1
                trunc = trunc or (horizon > 0 and t >= horizon)
                steps.append((obs.astype(np.float32), a, np.float32(r), term, trunc and not term))
                prev_a, prev_r, prev_d = a, float(np.float32(r)), float(term or trunc)
                obs = nxt
                if term or trunc:
                    break
        out.append(steps)
    return out


@pytest.mark.parametrize(
    ("env_name", "processes", "horizon"),
    # cheetah-vel and ant-dir step through the families' batched stepper (LocomotionEnv.batch);
    # cheetah-dir with the default layout (MuJoCo's thread pool in one process, on MuJoCo 4)
    [
        ("point-robot", 1, 7),
        ("hopper-params", 2, 0),
        ("cheetah-vel", 2, 30),
        ("ant-dir", 2, 0),
        ("cheetah-dir", 0, 30),
    ],
)
def test_sampler_equals_stepping_each_env_alone(env_name, processes, horizon):
    probe = mql.envs.make(env_name, seed=0)
    n, n_ep = 3, 2
    tasks = [probe.train_tasks[i] for i in (0, 1, 0)]
    seeds = np.arange(100, 100 + n * n_ep).reshape(n, n_ep)
    act, step_fn = _linear_policy(probe.observation_space.shape[0], probe.action_space.shape[0])
    with Sampler(env_name, 0, n, processes=processes, horizon=horizon) as sampler:
        assert sampler.processes == (processes or sampler.processes)
        traj, calls = sampler.sample(tasks, seeds, step_fn, 0)
    expected = _one_by_one(env_name, tasks, seeds, act, horizon)
    assert calls == traj.valid.shape[0]  # one policy call per time step for all slots
    for j in range(n):
        steps = expected[j]
        t_len = len(steps)
        assert traj.valid[:t_len, j].all() and not traj.valid[t_len:, j].any()
        np.testing.assert_array_equal(traj.obs[:t_len, j], [s[0] for s in steps])
        np.testing.assert_array_equal(traj.actions[:t_len, j], [s[1] for s in steps])
        np.testing.assert_array_equal(traj.rewards[:t_len, j], [s[2] for s in steps])
        np.testing.assert_array_equal(traj.terminated[:t_len, j], [s[3] for s in steps])
        np.testing.assert_array_equal(traj.truncated[:t_len, j], [s[4] for s in steps])
        ends = np.flatnonzero(traj.episode_end[:, j])
        assert len(ends) == n_ep and ends[-1] == t_len - 1
        assert traj.trial_end[:, j].sum() == 1 and traj.trial_end[t_len - 1, j]
        # the step after an episode boundary has done = 1 and the episode index moves on
        assert traj.inputs.prev_done[ends[0] + 1, j] == 1.0
        assert traj.episode[ends[0] + 1, j] == 1 and traj.t_episode[ends[0] + 1, j] == 0
    if horizon:
        assert traj.valid.shape[0] == n_ep * horizon and traj.truncated.sum() == n * n_ep
    returns = traj.episode_returns()
    assert returns.shape == (n, n_ep) and np.isfinite(returns).all()


def test_processes_and_threads_give_the_same_numbers():
    probe = mql.envs.make("cheetah-dir", seed=0)
    tasks = [probe.train_tasks[i % 2] for i in range(5)]
    seeds = np.arange(10).reshape(5, 2)
    _, step_fn = _linear_policy(20, 6)
    results = []
    pooled = pools_physics("cheetah-dir")
    layouts = [(1, 1), (2, 1), (1, 2)] if pooled else [(1, 0), (2, 0)]
    for processes, threads in layouts:
        with Sampler("cheetah-dir", 0, 5, processes, horizon=30, threads=threads) as sampler:
            assert (sampler.processes, sampler.threads) == (processes, threads)
            results.append(sampler.sample(tasks, seeds, step_fn, 0)[0])
    for other in results[1:]:
        for a, b in zip(results[0][:10], other[:10], strict=True):
            np.testing.assert_array_equal(a, b)


def test_default_layout():
    """The half-cheetah (MuJoCo 4): one process, a pool thread per core; the others: a
    process per core and no pool."""
    cores = default_processes(1000)
    with Sampler("cheetah-vel", 0, 4) as sampler:
        expected = (1, cores) if pools_physics("cheetah-vel") else (min(cores, 4), 0)
        assert (sampler.processes, sampler.threads) == expected
    with Sampler("hopper-params", 0, 4) as sampler:
        assert (sampler.processes, sampler.threads) == (min(cores, 4), 0)
    for bad in ({"processes": -1}, {"threads": -2}):
        with pytest.raises(ValueError, match="must be >= 0"):
            Sampler("point-robot", 0, 2, **bad)


def test_final_obs_is_the_observation_the_episode_ended_in():
    env = mql.envs.make("point-robot", seed=0)
    _, step_fn = _linear_policy(2, 2)
    with Sampler("point-robot", 0, 1, processes=1) as sampler:
        traj, _ = sampler.sample([env.train_tasks[0]], np.array([[5]]), step_fn, 0)
    # point-robot's observation is its state: the final one is the last obs plus the step
    last = traj.obs[-1, 0] + np.clip(traj.actions[-1, 0], -1, 1) * 0.1
    np.testing.assert_allclose(traj.final_obs[-1, 0], last, rtol=1e-6, atol=1e-6)
    assert traj.truncated[-1, 0] and not traj.final_obs[:-1].any()
    # inputs[T] (for a recurrent value) is the final observation with done = 1
    np.testing.assert_array_equal(traj.inputs.obs[-1, 0], traj.final_obs[-1, 0])
    assert traj.inputs.prev_done[-1, 0] == 1.0 and traj.inputs.obs.shape[0] == 21


def test_a_failing_worker_raises_one_line():
    env = mql.envs.make("point-robot", seed=0)
    _, step_fn = _linear_policy(2, 2)
    with Sampler("point-robot", 0, 2, processes=2) as sampler:
        bad = [env.train_tasks[0], {"goal": np.zeros(3)}]  # a wrongly shaped task in shard 2
        with pytest.raises(SamplerError, match=r"sampler worker failed: ValueError: .*shape"):
            sampler.sample(bad, np.zeros((2, 1)), step_fn, 0)


def test_split_balances_slots():
    assert split(5, 2) == [(0, 2), (2, 5)] or split(5, 2) == [(0, 3), (3, 5)]
    assert [hi - lo for lo, hi in split(7, 3)] in ([2, 3, 2], [3, 2, 2], [2, 2, 3])
    assert split(1, 4) == [(0, 1)]
