"""Reusable host memory for the minibatches handed to the learner.

`MQL` gathers K = `updates_per_call` minibatches per compiled call (`ReplayBuffer.gather_packed`)
and transfers them with `jax.device_put`. Gathered into a fresh array each call, that is fresh
memory from the operating system every time: for humanoid-dir the 50 windows of one call
occupy 424 MB, and first-touch page faults made the gather take 0.14-1.2 s per call, after
which `jax.device_put` copied the 424 MB again (0.3 s). `BatchStaging` gathers into arrays it
keeps between calls instead, aligned to 64 bytes: reused memory has no page faults, and on the
CPU backend XLA wraps a 64-byte-aligned host array without copying it, so the transfer is
free (on a GPU it is one host-to-device copy, as before). docs/performance.md has the numbers.

Because the device arrays may alias the staging memory, it must not be rewritten while a
computation that reads them is pending. The contract: after launching the computation that
reads a staged batch, pass its outputs to `consumed_by`; the next `stage` of the same shape
waits for them and deletes the old device arrays before it writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from mql.offpolicy.replay import PackedBatch, ReplayBuffer

__all__ = ["BatchStaging", "aligned_empty"]

ALIGNMENT = 64  # bytes; what XLA's CPU client needs to use a host array in place


def aligned_empty(shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


class _Slot:
    """Host arrays for one batch shape, and the device arrays and readers of its last use."""

    def __init__(self, k: int, batch: int, window: int, feature: int, obs: int) -> None:
        n = k * batch
        self.flat = PackedBatch(
            window=aligned_empty((n, window, feature)),
            next_obs=aligned_empty((n, obs)),
            done=aligned_empty((n,)),
        )
        self.host = self.flat.stacked(k)
        self.device: PackedBatch | None = None
        self.readers: Any = None


class BatchStaging:
    """Gathers K minibatches into persistent aligned host arrays and puts them on the device.

    One set of arrays per (K, batch size, window, widths): in `MQL` one per call size of
    `mql.offpolicy.calls.chunk_sizes` (`updates_per_call`, 10, 1), for each batch size in use."""

    def __init__(self) -> None:
        self._slots: dict[tuple[int, ...], _Slot] = {}

    def stage(
        self, buffer: ReplayBuffer, indices: Sequence[np.ndarray]
    ) -> tuple[PackedBatch, PackedBatch]:
        """The minibatches at ``indices`` (K arrays of B row indices): (host, device).

        Both have a leading (K, B) shape; the host arrays are overwritten by the next `stage`
        of the same shape. Raises if the previous device batch of this shape was not marked
        with `consumed_by`."""
        if not indices:
            raise ValueError("BatchStaging.stage: no minibatches (indices is empty)")
        k, batch = len(indices), len(indices[0])
        key = (k, batch, buffer.history_len + 1, buffer.feature_dim, buffer.obs_dim)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(*key)
        elif slot.device is not None:
            if slot.readers is None:
                raise RuntimeError(
                    "BatchStaging.stage: the previous batch of this shape may still be read; "
                    "call consumed_by(outputs) after launching the computation that reads it"
                )
            jax.block_until_ready(slot.readers)
            for arr in slot.device:
                arr.delete()
            slot.device = slot.readers = None
        buffer.gather_packed(np.concatenate(indices), out=slot.flat)
        slot.device = jax.device_put(slot.host)
        slot.readers = None
        return slot.host, slot.device

    def consumed_by(self, outputs: Any) -> None:
        """Mark the batches staged since the last call as read by the computation whose
        outputs (any pytree of JAX arrays) are ``outputs``."""
        for slot in self._slots.values():
            if slot.device is not None and slot.readers is None:
                slot.readers = outputs

    @property
    def nbytes(self) -> int:
        """Host bytes held by the staging arrays."""
        return sum(a.nbytes for slot in self._slots.values() for a in slot.flat)
