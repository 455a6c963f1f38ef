"""The batched locomotion stepper (`LocomotionEnv.batch`, used by the sampler's shards) gives
each environment's own `step` bit for bit: observations, rewards, terminations, truncation at
the horizon, and the simulation state (warm start included) it leaves behind."""

from __future__ import annotations

import numpy as np
import pytest

import mql.envs
from mql.envs.locomotion_batch import integration_state, thread_pool_available
from mql.onpolicy.shard import Shard, allocate

BATCHED = ["cheetah-vel", "cheetah-vel-ood", "cheetah-dir", "ant-dir", "ant-goal"]


def test_families_with_and_without_a_batched_stepper():
    for name in BATCHED:
        assert mql.envs.family_class(name).batch is not None
    for name in ("humanoid-dir", "walker-params", "hopper-params"):
        assert getattr(mql.envs.family_class(name), "batch", None) is None


def _state(env) -> np.ndarray:
    return integration_state(env.model, env.data)


POOLED = [n for n in BATCHED if mql.envs.family_class(n).thread_pool_step]
needs_pool = pytest.mark.skipif(
    not thread_pool_available(), reason="this MuJoCo has no mujoco.batch (MuJoCo < 4)"
)
CASES = [(n, 0) for n in BATCHED] + [pytest.param(n, 2, marks=needs_pool) for n in POOLED]


@pytest.mark.parametrize(("name", "threads"), CASES)
def test_batch_step_equals_each_env_step(name, threads):
    """Each environment alone against the batch: the Python loop over each `MjData`
    (threads = 0) and, for the half-cheetah, MuJoCo's thread pool on 2 threads."""
    n, steps = 4, 230  # past the 200-step horizon: truncation and a reset in between
    batched = [mql.envs.make(name, seed=0) for _ in range(n)]
    alone = [mql.envs.make(name, seed=0) for _ in range(n)]
    tasks = batched[0].train_tasks
    for i in range(n):
        for env in (batched[i], alone[i]):
            env.set_task(tasks[i % len(tasks)])
            env.reset(seed=10 + i)
    batch = type(batched[0]).batch(batched, threads)
    assert batch.threads == threads
    rng = np.random.default_rng(1)
    nu = batched[0].action_space.shape[0]
    running = list(range(n))
    for t in range(steps):
        actions = rng.uniform(-1.5, 1.5, size=(n, nu))  # beyond [-1, 1]: clipped
        if t == 50:
            running = [0, 2, 3]  # a slot that is not stepped keeps its state
        obs, reward, terminated, truncated = batch.step(running, actions)
        for i in running:
            o, r, term, trunc, _ = alone[i].step(actions[i])
            np.testing.assert_array_equal(obs[i], o)
            assert reward[i] == r and bool(terminated[i]) == term and bool(truncated[i]) == trunc
            # time, qpos, qvel, qacc_warmstart, ctrl, ...: the whole simulation state
            np.testing.assert_array_equal(batch.integration_state(i), _state(alone[i]))
            assert batch.elapsed[i] == alone[i]._elapsed
            if term or trunc:
                batched[i].reset(seed=100 + t)
                batch.reload(i)
                alone[i].reset(seed=100 + t)
    if threads == 0:  # the loop steps each environment's own MjData and counts its steps
        for i in range(n):
            np.testing.assert_array_equal(_state(batched[i]), _state(alone[i]))
            assert batched[i]._elapsed == alone[i]._elapsed


def test_the_ant_is_never_pooled():
    """The ant's observations need mj_rnePostConstraint, which the pool does not run."""
    envs = [mql.envs.make("ant-goal", seed=0) for _ in range(2)]
    assert type(envs[0]).batch(envs, 2).threads == 0


def test_ant_dir_terminates_in_the_batch_as_alone():
    """Large actions topple the ant: the termination flag must come out the same."""
    envs = [mql.envs.make("ant-dir", seed=0) for _ in range(2)]
    ref = mql.envs.make("ant-dir", seed=0)
    for env in (*envs, ref):
        env.reset(seed=3)
    batch = type(ref).batch(envs)
    rng = np.random.default_rng(0)
    ended = False
    for _ in range(200):
        a = np.sign(rng.normal(size=(2, 8)))
        _, reward, terminated, _ = batch.step([0, 1], a)
        _, r, term, _, _ = ref.step(a[0])
        assert reward[0] == r and bool(terminated[0]) == term
        if term:
            ended = True
            break
    assert ended


@pytest.mark.parametrize("name", ["cheetah-vel", "ant-goal"])
def test_shard_through_the_batch_equals_the_plain_loop(name):
    """A shard stepped through the batch (and, for the half-cheetah, on MuJoCo's thread pool)
    and one stepped env by env give the same buffers, episode boundaries, resets and padding
    included; twice the same (deterministic)."""
    n, n_ep, horizon = 3, 2, 40
    probe = mql.envs.make(name, seed=0)
    obs_dim, nu = probe.observation_space.shape[0], probe.action_space.shape[0]
    tasks = [probe.train_tasks[i] for i in range(n)]
    seeds = np.arange(n * n_ep).reshape(n, n_ep)

    def run(batched: bool, threads: int = 0) -> list[np.ndarray]:
        buf = allocate(n, obs_dim, nu)
        shard = Shard(name, 0, n, buf, horizon, threads)
        if not batched:
            shard.batch_class = None
        shard.start(tasks, seeds)
        rng = np.random.default_rng(2)
        out = []
        for _ in range(n_ep * horizon + 3):  # 3 steps past the trials' end
            buf.actions[:] = rng.uniform(-1.2, 1.2, size=(n, nu))
            shard.step()
            out += [
                buf.next_obs.copy(),
                buf.final_obs.copy(),
                buf.reward.copy(),
                buf.terminated | buf.truncated,
                buf.done.copy(),
            ]
        shard.close()
        return out

    plain, batched, again = run(False), run(True), run(True)
    for a, b, c in zip(plain, batched, again, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
    assert plain[-1].all()  # every trial ended
    if name in POOLED and thread_pool_available():
        for a, b in zip(plain, run(True, threads=2), strict=True):
            np.testing.assert_array_equal(a, b)
