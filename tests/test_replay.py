"""Tests for mql.offpolicy.replay: context windows gathered by index arithmetic vs. a naive
reference."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mql.offpolicy.replay import (
    Batch,
    ContextWindow,
    PackedBatch,
    ReplayBuffer,
    make_feature,
    unpack,
)

OBS, ACT = 3, 2
FEAT = ACT + 1 + OBS


class Log:
    """Everything ever added, in order, kept plainly for the naive reference."""

    def __init__(self) -> None:
        self.features: list[np.ndarray] = []
        self.next_obs: list[np.ndarray] = []
        self.terminated: list[bool] = []
        self.task: list[int] = []
        self.episode: list[int] = []
        self.histories: list[np.ndarray] = []  # ContextWindow.history() before each step
        self.next_histories: list[np.ndarray] = []  # ContextWindow.history() after each step


def fill(
    buf: ReplayBuffer,
    rng: np.random.Generator,
    lengths: list[int],
    terminated: list[bool],
    tasks: list[int],
) -> Log:
    """Add episodes step by step, running a ContextWindow alongside."""
    log = Log()
    window = ContextWindow(OBS, ACT, buf.history_len)
    for ep, (n, term, task) in enumerate(zip(lengths, terminated, tasks, strict=True)):
        window.reset()
        obs = rng.normal(size=OBS).astype(np.float32)
        for t in range(n):
            action = rng.uniform(-1, 1, size=ACT).astype(np.float32)
            reward = float(rng.normal())
            next_obs = rng.normal(size=OBS).astype(np.float32)
            done = term and t == n - 1
            log.histories.append(window.history())
            buf.add(obs, action, reward, next_obs, done, task, t)
            window.push(obs, action, reward)
            log.next_histories.append(window.history())
            log.features.append(make_feature(obs, action, reward))
            log.next_obs.append(next_obs)
            log.terminated.append(done)
            log.task.append(task)
            log.episode.append(ep)
            obs = next_obs
    return log


def live_globals(buf: ReplayBuffer, log: Log) -> dict[int, int]:
    """Map buffer row index -> global index (position in the log) for rows still stored."""
    n = len(log.features)
    first = n - len(buf)
    return {g % buf.capacity: g for g in range(first, n)}


def naive_window(log: Log, g: int, first_live: int, H: int) -> np.ndarray:
    """[f_{t-H}, ..., f_t] for global step g, walking backwards through the stored steps."""
    out = np.zeros((H + 1, FEAT), dtype=np.float32)
    out[H] = log.features[g]
    for m in range(1, H + 1):
        j = g - m
        if j < first_live or log.episode[j] != log.episode[g]:
            break  # before the episode start, or overwritten by the ring: zero padding
        out[H - m] = log.features[j]
    return out


def check_against_reference(buf: ReplayBuffer, log: Log, indices: np.ndarray) -> None:
    batch = buf.gather(indices)
    H = buf.history_len
    to_global = live_globals(buf, log)
    first_live = len(log.features) - len(buf)
    assert batch.history.shape == (len(indices), H, FEAT)
    assert batch.next_history.shape == (len(indices), H, FEAT)
    for b, i in enumerate(indices):
        g = to_global[int(i)]
        ref = naive_window(log, g, first_live, H)
        np.testing.assert_array_equal(batch.history[b], ref[:H])
        np.testing.assert_array_equal(batch.next_history[b], ref[1:])
        f = log.features[g]
        np.testing.assert_array_equal(batch.action[b], f[:ACT])
        assert batch.reward[b] == f[ACT]
        np.testing.assert_array_equal(batch.obs[b], f[ACT + 1 :])
        np.testing.assert_array_equal(batch.next_obs[b], log.next_obs[g])
        assert batch.done[b] == float(log.terminated[g])
        assert batch.task[b] == log.task[g]


LENGTHS = [7, 1, 12, 3, 25, 2, 9, 15]
TERMINATED = [False, True, True, False, False, True, False, True]
TASKS = [0, 1, 2, 0, 1, 2, 0, 3]


def test_gather_matches_naive_reference_across_episodes() -> None:
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(capacity=1000, obs_dim=OBS, act_dim=ACT, history_len=5)
    log = fill(buf, rng, LENGTHS, TERMINATED, TASKS)
    assert len(buf) == sum(LENGTHS)
    check_against_reference(buf, log, np.arange(len(buf)))
    check_against_reference(buf, log, buf.sample_indices(rng, 64))


@pytest.mark.parametrize("capacity", [1000, 40])  # 40: after the ring wrapped
def test_packed_gather_unpacks_to_gather(capacity: int) -> None:
    rng = np.random.default_rng(5)
    buf = ReplayBuffer(capacity=capacity, obs_dim=OBS, act_dim=ACT, history_len=5)
    fill(buf, rng, LENGTHS, TERMINATED, TASKS)
    idx = buf.sample_indices(rng, 64)
    packed = buf.gather_packed(idx)
    assert isinstance(packed, PackedBatch)
    assert packed.window.shape == (64, 6, ACT + 1 + OBS)
    full, got = buf.gather(idx), unpack(packed, ACT)
    for name in Batch._fields:
        if name != "task":  # task ids do not travel in a packed batch
            np.testing.assert_array_equal(getattr(got, name), getattr(full, name), err_msg=name)
    # leading axes (K stacked minibatches) unpack the same way
    stacked = packed.stacked(4)
    np.testing.assert_array_equal(
        unpack(stacked, ACT).next_history.reshape(full.next_history.shape), full.next_history
    )


@pytest.mark.parametrize("capacity", [1000, 40])  # 40: after the ring wrapped
def test_packed_gather_into_out_equals_fresh_arrays(capacity: int) -> None:
    rng = np.random.default_rng(6)
    buf = ReplayBuffer(capacity=capacity, obs_dim=OBS, act_dim=ACT, history_len=5)
    fill(buf, rng, LENGTHS, TERMINATED, TASKS)
    idx = buf.sample_indices(rng, 32)
    out = PackedBatch(
        window=np.full((32, 6, ACT + 1 + OBS), np.nan, np.float32),  # stale contents
        next_obs=np.full((32, OBS), np.nan, np.float32),
        done=np.full(32, np.nan, np.float32),
    )
    got = buf.gather_packed(idx, out=out)
    assert all(g is o for g, o in zip(got, out, strict=True))  # written in place
    for g, ref in zip(got, buf.gather_packed(idx), strict=True):
        np.testing.assert_array_equal(g, ref)


def test_packed_batch_stacked_is_k_minibatches_of_views() -> None:
    buf = ReplayBuffer(capacity=100, obs_dim=OBS, act_dim=ACT, history_len=5)
    fill(buf, np.random.default_rng(8), [30], [False], [0])
    flat = buf.gather_packed(np.arange(24))
    stacked = flat.stacked(4)
    assert stacked.window.shape == (4, 6, 6, ACT + 1 + OBS)
    assert stacked.next_obs.shape == (4, 6, OBS) and stacked.done.shape == (4, 6)
    np.testing.assert_array_equal(stacked.window[1, 2], flat.window[8])
    assert all(np.shares_memory(a, b) for a, b in zip(stacked, flat, strict=True))


def test_packed_gather_rejects_a_wrong_out() -> None:
    buf = ReplayBuffer(capacity=100, obs_dim=OBS, act_dim=ACT, history_len=5)
    fill(buf, np.random.default_rng(7), [10], [False], [0])
    good = buf.gather_packed(np.arange(4))
    with pytest.raises(ValueError, match=r"out.window must be a float32 array of shape"):
        buf.gather_packed(np.arange(4), out=good._replace(window=good.window[:, :5]))
    with pytest.raises(ValueError, match=r"out.done must be a float32 array"):
        buf.gather_packed(np.arange(4), out=good._replace(done=good.done.astype(np.float64)))


def test_zero_padding_at_episode_start() -> None:
    rng = np.random.default_rng(1)
    H = 4
    buf = ReplayBuffer(capacity=100, obs_dim=OBS, act_dim=ACT, history_len=H)
    log = fill(buf, rng, [6, 6], [True, False], [0, 0])
    # first step of the second episode: no history at all, next_history = [0, 0, 0, f_0]
    batch = buf.gather(np.array([6, 7]))
    assert not batch.history[0].any()
    assert not batch.next_history[0, :-1].any()
    np.testing.assert_array_equal(batch.next_history[0, -1], log.features[6])
    np.testing.assert_array_equal(batch.history[1, -1], log.features[6])
    assert not batch.history[1, :-1].any()
    assert buf.gather(np.array([5])).done[0] == 1.0  # the first episode terminated
    assert batch.done[0] == 0.0


@pytest.mark.parametrize(("capacity", "H"), [(23, 5), (10, 4), (4, 6), (1, 3), (31, 1)])
def test_ring_wraparound_zero_pads_overwritten_rows(capacity: int, H: int) -> None:
    rng = np.random.default_rng(capacity)
    buf = ReplayBuffer(capacity=capacity, obs_dim=OBS, act_dim=ACT, history_len=H)
    log = fill(buf, rng, LENGTHS, TERMINATED, TASKS)
    assert len(buf) == capacity < len(log.features)
    check_against_reference(buf, log, np.arange(capacity))
    check_against_reference(buf, log, buf.sample_indices(rng, 50))


def test_wraparound_at_every_fill_level() -> None:
    """Stop at every possible ring position, including just before and after wrapping."""
    capacity, H = 13, 5
    for n_eps in range(1, len(LENGTHS) + 1):
        rng = np.random.default_rng(n_eps)
        buf = ReplayBuffer(capacity=capacity, obs_dim=OBS, act_dim=ACT, history_len=H)
        log = fill(buf, rng, LENGTHS[:n_eps], TERMINATED[:n_eps], TASKS[:n_eps])
        check_against_reference(buf, log, np.arange(len(buf)))


def test_context_window_equals_gather() -> None:
    rng = np.random.default_rng(2)
    buf = ReplayBuffer(capacity=1000, obs_dim=OBS, act_dim=ACT, history_len=6)
    log = fill(buf, rng, LENGTHS, TERMINATED, TASKS)
    batch = buf.gather(np.arange(len(buf)))
    np.testing.assert_array_equal(batch.history, np.stack(log.histories))
    np.testing.assert_array_equal(batch.next_history, np.stack(log.next_histories))


def test_per_task_sampling() -> None:
    rng = np.random.default_rng(3)
    buf = ReplayBuffer(capacity=1000, obs_dim=OBS, act_dim=ACT, history_len=3)
    log = fill(buf, rng, LENGTHS, TERMINATED, TASKS)
    np.testing.assert_array_equal(buf.task_ids(), [0, 1, 2, 3])
    for task in (0, 1, 2, 3):
        idx = buf.sample_indices(rng, 200, task=task)
        assert all(log.task[i] == task for i in idx)
        expected = {i for i, k in enumerate(log.task) if k == task}
        assert set(idx.tolist()) == expected  # 200 draws cover every row of the task
        assert (buf.sample(rng, 32, task=task).task == task).all()
    with pytest.raises(ValueError, match="no rows of task 7"):
        buf.sample_indices(rng, 4, task=7)


def test_uniform_sampling_covers_buffer() -> None:
    rng = np.random.default_rng(4)
    buf = ReplayBuffer(capacity=20, obs_dim=OBS, act_dim=ACT, history_len=3)
    fill(buf, rng, LENGTHS, TERMINATED, TASKS)
    idx = buf.sample_indices(rng, 2000)
    assert idx.min() == 0 and idx.max() == 19
    counts = np.bincount(idx, minlength=20)
    assert counts.min() > 50  # ~100 expected each


def test_empty_buffer_raises() -> None:
    buf = ReplayBuffer(capacity=10, obs_dim=OBS, act_dim=ACT, history_len=3)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(np.random.default_rng(0), 4)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(np.random.default_rng(0), 4, task=0)


def test_same_seed_same_batch() -> None:
    buf = ReplayBuffer(capacity=50, obs_dim=OBS, act_dim=ACT, history_len=4)
    fill(buf, np.random.default_rng(5), LENGTHS, TERMINATED, TASKS)
    a = buf.sample(np.random.default_rng(123), 32)
    b = buf.sample(np.random.default_rng(123), 32)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("capacity", [1000, 17])
def test_state_dict_round_trip(capacity: int) -> None:
    buf = ReplayBuffer(capacity=capacity, obs_dim=OBS, act_dim=ACT, history_len=4)
    fill(buf, np.random.default_rng(6), LENGTHS, TERMINATED, TASKS)
    state = buf.state_dict()
    # through np.savez too, as a checkpoint would (ints come back as 0-d arrays)
    f = io.BytesIO()
    np.savez(f, **state)
    f.seek(0)
    loaded = dict(np.load(f))
    for source in (state, loaded):
        other = ReplayBuffer(capacity=capacity, obs_dim=OBS, act_dim=ACT, history_len=4)
        other.load_state_dict(source)
        assert len(other) == len(buf)
        np.testing.assert_array_equal(other.task_ids(), buf.task_ids())
        a = buf.sample(np.random.default_rng(9), 64)
        b = other.sample(np.random.default_rng(9), 64)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    # adding after a restore continues exactly as adding to the original would
    restored = ReplayBuffer(capacity=capacity, obs_dim=OBS, act_dim=ACT, history_len=4)
    restored.load_state_dict(loaded)
    for r in (buf, restored):
        r.add(np.ones(OBS), np.ones(ACT), 1.0, np.ones(OBS), False, 5, 0)
        r.add(np.ones(OBS), np.ones(ACT), 2.0, np.ones(OBS), True, 5, 1)
    for x, y in zip(
        buf.gather(np.arange(len(buf))), restored.gather(np.arange(len(buf))), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    wrong = ReplayBuffer(capacity=capacity, obs_dim=OBS, act_dim=ACT, history_len=5)
    with pytest.raises(ValueError, match="history_len"):
        wrong.load_state_dict(state)


def test_bytes_per_transition() -> None:
    buf = ReplayBuffer(capacity=1000, obs_dim=20, act_dim=6, history_len=20)
    assert buf.bytes_per_transition < 400
    assert buf.bytes_per_transition == 27 * 4 + 20 * 4 + 1 + 4 + 4  # 197


def test_batch_dtypes_and_readonly_windows() -> None:
    buf = ReplayBuffer(capacity=50, obs_dim=OBS, act_dim=ACT, history_len=4)
    fill(buf, np.random.default_rng(7), LENGTHS, TERMINATED, TASKS)
    batch = buf.sample(np.random.default_rng(0), 8)
    assert isinstance(batch, Batch)
    for name in ("obs", "action", "reward", "next_obs", "done", "history", "next_history"):
        assert getattr(batch, name).dtype == np.float32, name
    assert batch.task.dtype == np.int32
    assert not batch.history.flags.writeable


def test_add_episode_equals_add() -> None:
    rng = np.random.default_rng(8)
    a = ReplayBuffer(capacity=30, obs_dim=OBS, act_dim=ACT, history_len=4)
    b = ReplayBuffer(capacity=30, obs_dim=OBS, act_dim=ACT, history_len=4)
    for n, term, task in zip(LENGTHS, TERMINATED, TASKS, strict=True):
        obs = rng.normal(size=(n, OBS))
        act = rng.normal(size=(n, ACT))
        rew = rng.normal(size=n)
        nobs = rng.normal(size=(n, OBS))
        a.add_episode(obs, act, rew, nobs, term, task)
        for t in range(n):
            b.add(obs[t], act[t], rew[t], nobs[t], term and t == n - 1, task, t)
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


@pytest.mark.parametrize(
    "args",
    [
        (0, 3, 2, 4),
        (-5, 3, 2, 4),
        (10, 0, 2, 4),
        (10, 3, 0, 4),
        (10, 3, 2, 0),
        (10.0, 3, 2, 4),
        (10, 3, 2, True),
        ("10", 3, 2, 4),
    ],
)
def test_bad_constructor_arguments(args: tuple) -> None:
    with pytest.raises(ValueError, match="positive int"):
        ReplayBuffer(*args)


def test_bad_context_window_arguments() -> None:
    with pytest.raises(ValueError, match="history_len"):
        ContextWindow(3, 2, 0)


def test_bad_add_arguments() -> None:
    buf = ReplayBuffer(capacity=10, obs_dim=OBS, act_dim=ACT, history_len=3)
    o, a = np.zeros(OBS), np.zeros(ACT)
    with pytest.raises(ValueError, match="obs"):
        buf.add(np.zeros(OBS + 1), a, 0.0, o, False, 0, 0)
    with pytest.raises(ValueError, match="action"):
        buf.add(o, np.zeros(ACT + 1), 0.0, o, False, 0, 0)
    with pytest.raises(ValueError, match="empty"):
        buf.add(o, a, 0.0, o, False, 0, 3)  # mid-episode into an empty buffer
    buf.add(o, a, 0.0, o, False, 0, 0)
    with pytest.raises(ValueError, match="consecutively"):
        buf.add(o, a, 0.0, o, False, 0, 2)  # skipped a step
    with pytest.raises(ValueError, match="consecutively"):
        buf.add(o, a, 0.0, o, False, 1, 1)  # other task
    buf.add(o, a, 0.0, o, True, 0, 1)
    with pytest.raises(ValueError, match="consecutively"):
        buf.add(o, a, 0.0, o, False, 0, 2)  # continues past termination
    with pytest.raises(ValueError, match="step must be >= 0"):
        buf.add(o, a, 0.0, o, False, 0, -1)
    with pytest.raises(ValueError, match="indices"):
        buf.gather(np.array([len(buf)]))
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample_indices(np.random.default_rng(0), 0)
