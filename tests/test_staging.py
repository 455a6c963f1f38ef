"""BatchStaging: aligned reusable host arrays, the same numbers as a fresh gather, the
use contract, and MQL's updates through it."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mql.offpolicy.replay import PackedBatch, ReplayBuffer
from mql.offpolicy.staging import BatchStaging, aligned_empty

OBS, ACT, H = 3, 2, 4


def filled_buffer(capacity: int = 200, seed: int = 0) -> ReplayBuffer:
    buf = ReplayBuffer(capacity, OBS, ACT, H)
    rng = np.random.default_rng(seed)
    for ep in range(8):
        n = 11 + ep
        buf.add_episode(rng.normal(size=(n, OBS)), rng.uniform(-1, 1, (n, ACT)),
                        rng.normal(size=n), rng.normal(size=(n, OBS)), ep % 3 == 0, ep)  # fmt: skip
    return buf


@pytest.mark.parametrize("shape", [(7,), (3, 5, 11), (1, 1)])
def test_aligned_empty_is_aligned_and_contiguous(shape: tuple[int, ...]) -> None:
    a = aligned_empty(shape)
    assert a.shape == shape and a.dtype == np.float32
    assert a.ctypes.data % 64 == 0
    assert a.flags.c_contiguous and a.flags.writeable


def test_stage_equals_gather_packed_and_reuses_memory() -> None:
    buf, staging, rng = filled_buffer(), BatchStaging(), np.random.default_rng(1)
    pointers = None
    for _ in range(3):
        indices = [buf.sample_indices(rng, 6) for _ in range(4)]
        host, dev = staging.stage(buf, indices)
        ref = buf.gather_packed(np.concatenate(indices))
        for h, d, r in zip(host, dev, ref, strict=True):
            assert h.shape == d.shape == (4, 6, *r.shape[1:])
            np.testing.assert_array_equal(h.reshape(r.shape), r)
            np.testing.assert_array_equal(np.asarray(d).reshape(r.shape), r)
        now = [h.ctypes.data for h in host]
        assert pointers is None or now == pointers  # the same host memory every call
        pointers = now
        staging.consumed_by(jax.numpy.sum(dev.window))
    assert staging.nbytes == 4 * 6 * ((H + 1) * (ACT + 1 + OBS) + OBS + 1) * 4


def test_stage_waits_for_readers_and_deletes_the_old_device_batch() -> None:
    buf, staging, rng = filled_buffer(), BatchStaging(), np.random.default_rng(2)
    _, first = staging.stage(buf, [buf.sample_indices(rng, 5)])
    total = jax.numpy.sum(first.window)
    staging.consumed_by(total)
    expected = float(np.asarray(first.window).sum())
    _, second = staging.stage(buf, [buf.sample_indices(rng, 5)])
    assert all(a.is_deleted() for a in first)  # using it now fails loudly, not silently
    assert float(total) == pytest.approx(expected)  # read before the memory was rewritten
    assert not any(a.is_deleted() for a in second)


def test_stage_without_consumed_by_raises() -> None:
    buf, staging, rng = filled_buffer(), BatchStaging(), np.random.default_rng(3)
    staging.stage(buf, [buf.sample_indices(rng, 5)])
    with pytest.raises(RuntimeError, match="call consumed_by"):
        staging.stage(buf, [buf.sample_indices(rng, 5)])
    # another shape has its own arrays, so it may be staged meanwhile
    staging.stage(buf, [buf.sample_indices(rng, 5), buf.sample_indices(rng, 5)])


def test_shapes_get_their_own_arrays() -> None:
    buf, staging, rng = filled_buffer(), BatchStaging(), np.random.default_rng(4)
    host_a, _ = staging.stage(buf, [buf.sample_indices(rng, 5) for _ in range(3)])
    host_b, _ = staging.stage(buf, [buf.sample_indices(rng, 7)])
    assert host_a.window.shape[:2] == (3, 5) and host_b.window.shape[:2] == (1, 7)
    assert isinstance(host_a, PackedBatch)


def test_a_failed_gather_leaves_staging_usable() -> None:
    buf, staging, rng = filled_buffer(), BatchStaging(), np.random.default_rng(5)
    _, dev = staging.stage(buf, [buf.sample_indices(rng, 5)])
    staging.consumed_by(dev)
    with pytest.raises(ValueError, match="indices must lie in"):
        staging.stage(buf, [np.array([0, 1, 2, 3, len(buf)])])
    host, _ = staging.stage(buf, [np.arange(5)])  # no stale device batch to wait for
    np.testing.assert_array_equal(host.next_obs[0], buf.gather_packed(np.arange(5)).next_obs)
    with pytest.raises(ValueError, match="no minibatches"):
        staging.stage(buf, [])
