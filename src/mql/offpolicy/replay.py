"""Replay buffer with context windows gathered at sampling time.

MQL conditions the actor and the critic on a context: a GRU run over the last ``H`` steps of
(previous action, previous reward, previous observation), zero-padded before the start of the
episode (see ``REFERENCE.md`` §2).

The released MQL code stored, for every transition, the flattened history windows
(``H * (act_dim + 1 + obs_dim)`` floats for the context of ``o_t`` and again for the context of
``o_{t+1}``, about 4 KB per transition at ``H = 20``). This module replaces that: each
environment step is stored exactly once, as the row feature

    f_t = concat(a_t, [r_t], o_t)        (float32, width act_dim + 1 + obs_dim)

together with ``o_{t+1}``, the termination flag, the task id and the step's position ``t`` in its
episode. The windows are rebuilt when a batch is sampled, by index arithmetic on the ring:

    history_t      = [f_{t-H},   ..., f_{t-1}]     (context for acting at o_t)
    next_history_t = [f_{t-H+1}, ..., f_t]         (context for o_{t+1})

with ``f_j = 0`` for ``j < 0`` (before the episode start) and for rows the ring has already
overwritten. For ``obs_dim = 20, act_dim = 6`` this takes 197 bytes per transition whatever ``H``
is.

Steps of one episode must be added consecutively (``step = 0, 1, 2, ...``) so that the
predecessor of a row is the row stored just before it; `ReplayBuffer.add` checks this.

`ContextWindow` keeps the same window online while acting, so the policy sees exactly the context
that `ReplayBuffer.gather` later rebuilds for that step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Batch", "ContextWindow", "PackedBatch", "ReplayBuffer", "make_feature", "unpack"]


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _as_vector(name: str, value: ArrayLike, dim: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.shape[0] != dim:
        raise ValueError(f"{name} must have {dim} elements, got shape {np.shape(value)}")
    return arr


def make_feature(obs: ArrayLike, action: ArrayLike, reward: float) -> np.ndarray:
    """The row feature ``f_t = concat(a_t, [r_t], o_t)`` as a float32 vector."""
    return np.concatenate(
        [
            np.asarray(action, dtype=np.float32).reshape(-1),
            np.asarray([reward], dtype=np.float32),
            np.asarray(obs, dtype=np.float32).reshape(-1),
        ]
    )


class Batch(NamedTuple):
    """A sampled batch of transitions with their context windows."""

    obs: np.ndarray  # (B, obs_dim) float32
    action: np.ndarray  # (B, act_dim) float32
    reward: np.ndarray  # (B,) float32
    next_obs: np.ndarray  # (B, obs_dim) float32
    done: np.ndarray  # (B,) float32, 1.0 where the episode terminated (not truncated)
    task: np.ndarray  # (B,) int32 task id
    history: np.ndarray  # (B, H, act_dim + 1 + obs_dim) float32, zero padded, oldest first
    next_history: np.ndarray  # (B, H, act_dim + 1 + obs_dim) float32
    # history and next_history are read-only views of one (B, H + 1, feature) array.


class PackedBatch(NamedTuple):
    """A sampled batch as it crosses to the learner: each sample's (H + 1)-row window once.

    ``history`` and ``next_history`` overlap in H - 1 rows and the current row holds the
    sample's action, reward and observation, so one window carries all of them: half the bytes
    of `Batch` to copy and transfer. `unpack` recovers the `Batch` by slicing (inside a jitted
    update, or on the host)."""

    window: np.ndarray  # (..., H + 1, act_dim + 1 + obs_dim) float32, zero padded, oldest first
    next_obs: np.ndarray  # (..., obs_dim) float32
    done: np.ndarray  # (...,) float32

    def stacked(self, k: int) -> PackedBatch:
        """The k·B samples of a flat batch as k minibatches of B (leading axes (k, B); views)."""
        return PackedBatch(*(x.reshape(k, -1, *x.shape[1:]) for x in self))


def unpack(packed: PackedBatch, act_dim: int) -> Batch:
    """The `Batch` a `PackedBatch` holds (views; NumPy or JAX arrays; any leading axes).

    The task ids do not travel (the update does not use them): ``task`` is all zeros."""
    window = packed.window
    current = window[..., -1, :]
    return Batch(
        obs=current[..., act_dim + 1 :],
        action=current[..., :act_dim],
        reward=current[..., act_dim],
        next_obs=packed.next_obs,
        done=packed.done,
        task=np.zeros(window.shape[:-2], np.int32),
        history=window[..., :-1, :],
        next_history=window[..., 1:, :],
    )


class ReplayBuffer:
    """Ring buffer of environment steps; context windows are gathered when sampling.

    Storage per transition: one float32 row ``f_t`` (action, reward, observation), the float32
    next observation, a uint8 termination flag, an int32 task id and an int32 step index.
    This replaces the released MQL code's per-transition flattened histories.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, history_len: int) -> None:
        self.capacity = _check_positive_int("capacity", capacity)
        self.obs_dim = _check_positive_int("obs_dim", obs_dim)
        self.act_dim = _check_positive_int("act_dim", act_dim)
        self.history_len = _check_positive_int("history_len", history_len)
        self.feature_dim = self.act_dim + 1 + self.obs_dim
        self._rows = np.zeros((self.capacity, self.feature_dim), dtype=np.float32)
        self._next_obs = np.zeros((self.capacity, self.obs_dim), dtype=np.float32)
        self._terminated = np.zeros(self.capacity, dtype=np.uint8)
        self._task = np.zeros(self.capacity, dtype=np.int32)
        self._step = np.zeros(self.capacity, dtype=np.int32)
        self._ptr = 0  # next row to write
        self._size = 0  # rows stored

    # ------------------------------------------------------------------ adding
    def add(
        self,
        obs: ArrayLike,
        action: ArrayLike,
        reward: float,
        next_obs: ArrayLike,
        terminated: bool,
        task: int,
        step: int,
    ) -> None:
        """Store one environment step; ``step`` is its position ``t`` in the episode.

        An episode's steps must be added in order and without other rows in between: a row with
        ``step > 0`` must follow the row of ``step - 1`` of the same task, which must not be
        terminated. Otherwise the gathered histories would be wrong, so this raises ValueError.
        """
        step = int(step)
        task = int(task)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step > 0:
            if self._size == 0:
                raise ValueError(
                    f"step {step} > 0 added to an empty buffer: episodes must be added from step 0"
                )
            prev = (self._ptr - 1) % self.capacity
            if (
                int(self._step[prev]) != step - 1
                or int(self._task[prev]) != task
                or self._terminated[prev]
            ):
                raise ValueError(
                    f"step {step} (task {task}) does not continue the last stored row (step "
                    f"{int(self._step[prev])}, task {int(self._task[prev])}, terminated "
                    f"{bool(self._terminated[prev])}): add an episode's steps consecutively"
                )
        i = self._ptr
        self._rows[i, : self.act_dim] = _as_vector("action", action, self.act_dim)
        self._rows[i, self.act_dim] = np.float32(reward)
        self._rows[i, self.act_dim + 1 :] = _as_vector("obs", obs, self.obs_dim)
        self._next_obs[i] = _as_vector("next_obs", next_obs, self.obs_dim)
        self._terminated[i] = 1 if terminated else 0
        self._task[i] = task
        self._step[i] = step
        self._ptr = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def add_episode(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        next_obs: ArrayLike,
        terminated: bool,
        task: int,
    ) -> None:
        """Store a whole episode of ``T`` steps (arrays with leading dimension ``T``).

        ``terminated`` applies to the last step only (earlier steps are never terminal).
        """
        obs_a = np.asarray(obs, dtype=np.float32)
        n = obs_a.shape[0]
        act_a = np.asarray(actions, dtype=np.float32)
        rew_a = np.asarray(rewards, dtype=np.float32).reshape(-1)
        nobs_a = np.asarray(next_obs, dtype=np.float32)
        if not (act_a.shape[0] == rew_a.shape[0] == nobs_a.shape[0] == n):
            raise ValueError(
                "obs, actions, rewards and next_obs must have the same length, got "
                f"{obs_a.shape[0]}, {act_a.shape[0]}, {rew_a.shape[0]}, {nobs_a.shape[0]}"
            )
        for t in range(n):
            self.add(
                obs_a[t], act_a[t], float(rew_a[t]), nobs_a[t], terminated and t == n - 1, task, t
            )

    def __len__(self) -> int:
        return self._size

    # ---------------------------------------------------------------- sampling
    def task_ids(self) -> np.ndarray:
        """Sorted distinct task ids among the stored rows."""
        return np.unique(self._task[: self._size])

    def sample_indices(
        self, rng: np.random.Generator, batch_size: int, task: int | None = None
    ) -> np.ndarray:
        """Row indices drawn uniformly with replacement, optionally among one task's rows only."""
        batch_size = _check_positive_int("batch_size", batch_size)
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if task is None:
            return rng.integers(0, self._size, size=batch_size)
        candidates = np.flatnonzero(self._task[: self._size] == int(task))
        if candidates.size == 0:
            raise ValueError(
                f"no rows of task {task} in the replay buffer (tasks present: "
                f"{self.task_ids().tolist()})"
            )
        return candidates[rng.integers(0, candidates.size, size=batch_size)]

    def recent_indices(self, n: int) -> dict[int, np.ndarray]:
        """For every task id stored, the row indices of its `n` most recent rows (fewer if it
        has fewer), oldest first."""
        n = _check_positive_int("n", n)
        size = self._size
        oldest = self._ptr if size == self.capacity else 0
        rows = np.arange(size, dtype=np.int64)
        age_order = (rows - oldest) % self.capacity  # 0 for the oldest stored row
        order = np.lexsort((age_order, self._task[:size]))  # by task, then oldest first
        tasks = self._task[:size][order]
        starts = np.flatnonzero(np.r_[True, tasks[1:] != tasks[:-1]])
        ends = np.r_[starts[1:], size]
        return {int(tasks[a]): order[max(a, b - n) : b] for a, b in zip(starts, ends, strict=True)}

    def gather_packed(self, indices: ArrayLike, out: PackedBatch | None = None) -> PackedBatch:
        """The transitions at ``indices`` as one (H + 1)-row window each (see `gather`).

        With ``out`` (float32 arrays of shapes (n, H + 1, F), (n, obs_dim) and (n,) for n
        indices) the batch is written into those arrays and ``out`` is returned: reused memory
        (`mql.offpolicy.staging`) skips the page faults of a fresh allocation per call."""
        idx = self._check_indices(indices)
        if out is None:
            return PackedBatch(
                window=self._window(idx),
                next_obs=self._next_obs[idx],
                done=self._terminated[idx].astype(np.float32),
            )
        n, H, F = idx.shape[0], self.history_len, self.feature_dim
        shapes = ((n, H + 1, F), (n, self.obs_dim), (n,))
        for name, arr, shape in zip(PackedBatch._fields, out, shapes, strict=True):
            if arr.shape != shape or arr.dtype != np.float32:
                raise ValueError(
                    f"out.{name} must be a float32 array of shape {shape}, got "
                    f"{arr.dtype} {arr.shape}"
                )
        self._window(idx, out.window)
        np.take(self._next_obs, idx, axis=0, out=out.next_obs)
        out.done[:] = self._terminated[idx]
        return out

    def gather(self, indices: ArrayLike) -> Batch:
        """The transitions at ``indices`` with their context windows.

        Gathers rows ``(i - H + k) mod capacity`` for ``k = 0..H`` in one fancy-index op; row
        ``i - m`` is kept iff it belongs to the same episode (``m <= step[i]``) and has not been
        overwritten by the ring (``m <= (i - oldest) mod capacity``), else it is zeroed.
        """
        idx = self._check_indices(indices)
        H = self.history_len
        window = self._window(idx)
        # history and next_history are overlapping views of one array: make it read-only so
        # that an in-place edit of one cannot silently change the other.
        window.flags.writeable = False
        current = window[:, H]
        return Batch(
            obs=current[:, self.act_dim + 1 :].copy(),
            action=current[:, : self.act_dim].copy(),
            reward=current[:, self.act_dim].copy(),
            next_obs=self._next_obs[idx],
            done=self._terminated[idx].astype(np.float32),
            task=self._task[idx].astype(np.int32),
            history=window[:, :H],
            next_history=window[:, 1:],
        )

    def _check_indices(self, indices: ArrayLike) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self._size):
            raise ValueError(f"indices must lie in [0, {self._size}), the stored rows")
        return idx

    def _window(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(B, H + 1, F): rows i - H .. i of each index, zeroed where not of i's episode
        (written into ``out`` when given)."""
        H = self.history_len
        offsets = np.arange(-H, 1, dtype=np.int64)  # -m for m = H..0
        # rows (i - m) mod capacity ("wrap"); `out` of the right shape is written unbuffered
        window = np.take(self._rows, idx[:, None] + offsets, axis=0, out=out, mode="wrap")
        oldest = self._ptr if self._size == self.capacity else 0
        age = (idx - oldest) % self.capacity  # rows older than i still stored
        limit = np.minimum(self._step[idx].astype(np.int64), age)  # (B,)
        invalid = -offsets[None, :] > limit[:, None]  # (B, H+1)
        window[invalid] = 0.0
        return window

    def sample(self, rng: np.random.Generator, batch_size: int, task: int | None = None) -> Batch:
        """``gather(sample_indices(rng, batch_size, task))``."""
        return self.gather(self.sample_indices(rng, batch_size, task))

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, np.ndarray | int]:
        """Everything needed to restore the buffer exactly (arrays are copies)."""
        n = self._size
        return {
            "capacity": self.capacity,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "history_len": self.history_len,
            "ptr": self._ptr,
            "size": n,
            "rows": self._rows[:n].copy(),
            "next_obs": self._next_obs[:n].copy(),
            "terminated": self._terminated[:n].copy(),
            "task": self._task[:n].copy(),
            "step": self._step[:n].copy(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray | int]) -> None:
        """Restore from `state_dict` (also after a round trip through ``np.savez``)."""
        for name in ("capacity", "obs_dim", "act_dim", "history_len"):
            if int(state[name]) != getattr(self, name):
                raise ValueError(
                    f"state {name}={int(state[name])} does not match this buffer's "
                    f"{getattr(self, name)}"
                )
        ptr, size = int(state["ptr"]), int(state["size"])
        if not (0 <= size <= self.capacity and 0 <= ptr < self.capacity):
            raise ValueError(f"invalid ptr/size in state: ptr={ptr}, size={size}")
        if size < self.capacity and ptr != size:
            raise ValueError(f"invalid state: ptr={ptr} must equal size={size} before wrapping")
        arrays = {
            "rows": (self._rows, (size, self.feature_dim)),
            "next_obs": (self._next_obs, (size, self.obs_dim)),
            "terminated": (self._terminated, (size,)),
            "task": (self._task, (size,)),
            "step": (self._step, (size,)),
        }
        for name, (_, shape) in arrays.items():
            src = np.asarray(state[name])
            if src.shape != shape:
                raise ValueError(f"state[{name!r}] has shape {src.shape}, expected {shape}")
        for name, (dest, _) in arrays.items():
            dest[:] = 0
            dest[:size] = np.asarray(state[name], dtype=dest.dtype)
        self._ptr, self._size = ptr, size

    @property
    def bytes_per_transition(self) -> float:
        """Storage bytes divided by capacity."""
        total = sum(
            a.nbytes for a in (self._rows, self._next_obs, self._terminated, self._task, self._step)
        )
        return total / self.capacity


class ContextWindow:
    """The context window kept while acting; matches `ReplayBuffer.gather` for the same step.

    Call `reset` at the start of an episode, use `history` as the context for the current
    observation, and `push(obs, action, reward)` after each environment step (``obs`` being the
    observation the action was taken in).
    """

    def __init__(self, obs_dim: int, act_dim: int, history_len: int) -> None:
        self.obs_dim = _check_positive_int("obs_dim", obs_dim)
        self.act_dim = _check_positive_int("act_dim", act_dim)
        self.history_len = _check_positive_int("history_len", history_len)
        self.feature_dim = self.act_dim + 1 + self.obs_dim
        self._buf = np.zeros((self.history_len, self.feature_dim), dtype=np.float32)

    def reset(self) -> None:
        """Start of an episode: all rows zero."""
        self._buf[:] = 0.0

    def history(self) -> np.ndarray:
        """``(H, feature_dim)`` float32 copy, oldest row first."""
        return self._buf.copy()

    def push(self, obs: ArrayLike, action: ArrayLike, reward: float) -> None:
        """Append ``f_t = concat(a_t, [r_t], o_t)`` after an environment step."""
        f = np.empty(self.feature_dim, dtype=np.float32)
        f[: self.act_dim] = _as_vector("action", action, self.act_dim)
        f[self.act_dim] = np.float32(reward)
        f[self.act_dim + 1 :] = _as_vector("obs", obs, self.obs_dim)
        self._buf[:-1] = self._buf[1:]
        self._buf[-1] = f
