"""Environments of one locomotion family stepped together, for the on-policy sampler.

`LocomotionBatch` serves the sampler's shards (`mql.onpolicy.shard`): per environment only the
minimum runs in Python (write the control, one `mj_step`, copy the state the observation and
reward need into rows of per-shard arrays through views made once), and the action clipping,
observations, rewards and terminations are computed with NumPy over all of them. A family
(`mql.envs.mujoco_base.LocomotionEnv`) opts in by setting `batch` to its subclass (the cheetah
and ant families do); the results are bit-identical to calling each environment's `step`
(tests/test_envs_batch.py), and each environment's state, step count included, is left as its
own `step` would leave it (the `info` dicts are not built). Families that set
`thread_pool_step` (the half-cheetah) can instead have all their physics stepped in one call on
MuJoCo's own C thread pool (`mujoco.batch`, MuJoCo 4 and later; the Python loop above is the
fallback), the same numbers again; their state then lives in the pool, not in each `MjData`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np

__all__ = ["Field", "LocomotionBatch", "integration_state", "pools", "thread_pool_available"]

Field = tuple[str, tuple[Any, ...], np.ndarray]
"""(MjData field, index into it, destination rows): `data.<field>[index]`, flattened, is copied
into row i of the destination for environment i."""


def thread_pool_available() -> bool:
    """Whether this MuJoCo has `mujoco.batch` (4.0 and later): simulations stepped on a C thread
    pool, bit-identical to a loop over one `MjData` each."""
    try:
        import mujoco.batch  # noqa: F401
    except ImportError:
        return False
    return True


def pools(family: type) -> bool:
    """Whether `family`'s physics is stepped on MuJoCo's thread pool here: it allows it
    (`LocomotionEnv.thread_pool_step`) and this MuJoCo has the pool."""
    return bool(getattr(family, "thread_pool_step", False)) and thread_pool_available()


def integration_state(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """`data`'s full simulation state (`mjSTATE_INTEGRATION`: time, qpos, qvel, warm start,
    controls, ...)."""
    out = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_INTEGRATION))
    mujoco.mj_getState(model, data, out, mujoco.mjtState.mjSTATE_INTEGRATION)
    return out


class LocomotionBatch:
    """Environments of one locomotion family stepped together (see the module docstring).

    Subclasses fill `before` and `after` with `Field`s, copied before and after the physics;
    `finish` turns those rows into the observations, rewards and terminations.

    The physics runs one of two ways, with the same numbers (tests/test_envs_batch.py):
    `threads` = 0 steps each environment's own `MjData` in a Python loop, through NumPy views
    made once; `threads` >= 1 (families with `LocomotionEnv.thread_pool_step`, on a MuJoCo that
    has `mujoco.batch`) loads each environment's state into a `mujoco.batch.Batch` and steps
    them all in one C call on that many threads. Then an environment's own `MjData` and step
    count no longer follow its steps (the sampler reads neither; `integration_state(i)` and
    `elapsed[i]` do), and `reload(i)` must be called after environment i is reset.
    """

    def __init__(self, envs: Sequence[Any], threads: int = 0) -> None:
        # envs: `LocomotionEnv`s of one family (not imported: that module imports this one)
        if not envs:
            raise ValueError("LocomotionBatch needs at least one environment")
        first = envs[0]
        self.envs = list(envs)
        self.n = len(envs)
        self.models = [e.model for e in envs]
        self.datas = [e.data for e in envs]
        self.frame_skip = int(first.frame_skip)
        self.post_constraint = bool(first.post_constraint)
        self.dt = float(first.dt)
        self.horizon = int(first.horizon)
        self.ctrl_mid = first._ctrl_mid
        self.ctrl_half = first._ctrl_half
        self.ctrl = np.zeros((self.n, first.model.nu))
        self.before: list[Field] = []
        self.after: list[Field] = [("ctrl", (), self.ctrl)]
        self.elapsed = np.array([e._elapsed for e in envs], np.int64)
        """Each environment's steps in its episode (its `_elapsed`)."""
        self.threads = threads if threads >= 1 and pools(type(first)) else 0
        self._pool: Any = None
        self._copies: Any = None  # built at the first step, once subclasses added their fields

    def rows(self, width: int) -> np.ndarray:
        """A zeroed (n, width) float64 array of per-environment rows."""
        return np.zeros((self.n, width))

    def step(
        self, ids: list[int], actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step environments `ids` with `actions[i]` (rows of an (n, nu) array); returns
        (n, obs_dim) observations, (n,) rewards, terminated and truncated flags, whose rows
        `ids` are what each environment's `step` returns."""
        target = self.ctrl_mid + np.minimum(np.maximum(actions, -1.0), 1.0) * self.ctrl_half
        if self.threads:
            self._step_pool(ids, target)
        else:
            self._step_each(ids, target)
        obs, reward, terminated = self.finish()
        return obs, reward, terminated, self.elapsed >= self.horizon

    def _views(self, fields: list[Field]) -> list[tuple[list[np.ndarray], np.ndarray]]:
        """Per field, a view into every environment's `MjData` and the destination rows."""
        return [
            ([getattr(d, name)[index].reshape(-1) for d in self.datas], out)
            for name, index, out in fields
        ]

    def _step_each(self, ids: list[int], target: np.ndarray) -> None:
        """The physics one environment at a time on its own `MjData`, whose step count follows."""
        if self._copies is None:
            ctrl = [d.ctrl for d in self.datas]
            self._copies = (self._views(self.before), self._views(self.after), ctrl)
        before, after, ctrl = self._copies
        models, datas, frame_skip = self.models, self.datas, self.frame_skip
        envs, elapsed = self.envs, self.elapsed
        step, post = mujoco.mj_step, self.post_constraint
        for i in ids:
            env = envs[i]
            env._elapsed += 1
            elapsed[i] = env._elapsed
            for views, out in before:
                out[i] = views[i]
            ctrl[i][:] = target[i]
            step(models[i], datas[i], nstep=frame_skip)
            if post:
                mujoco.mj_rnePostConstraint(models[i], datas[i])
            for views, out in after:
                out[i] = views[i]

    def _build_pool(self) -> None:
        from mujoco.batch import Batch

        # one model for all: the family's model does not depend on the task (thread_pool_step)
        self._pool = Batch(self.models[0], nsim=self.n, nthread=self.threads)
        for i in range(self.n):
            self.reload(i)

        def bound(fields: list[Field]) -> list[tuple[np.ndarray, np.ndarray]]:
            pool = self._pool
            return [(pool.bind(name)[(slice(None), *index)], out) for name, index, out in fields]

        self._copies = (bound(self.before), bound(self.after), self._pool.bind("ctrl"))

    def reload(self, i: int) -> None:
        """Environment `i` was reset (its `MjData` holds the new state): step from it."""
        self.elapsed[i] = self.envs[i]._elapsed
        if self._pool is not None:
            m, d = self.models[i], self.datas[i]
            mujoco.mj_getState(m, d, self._pool.state[i], mujoco.mjtState.mjSTATE_INTEGRATION)

    def _step_pool(self, ids: list[int], target: np.ndarray) -> None:
        """The physics of all `ids` in one `mujoco.batch` call on `threads` threads (the
        environments' own `MjData` and step counts do not follow; `elapsed` does)."""
        if self._pool is None:
            self._build_pool()
        before, after, ctrl = self._copies
        k = len(ids)
        if k == 0:
            return
        # every environment (the common case): whole-array copies, no index lists
        rows: Any = slice(None) if k == self.n else np.asarray(ids, np.int64)
        for arr, out in before:
            out[rows] = arr[rows].reshape(k, -1)
        ctrl[rows] = target[rows]
        self._pool.step(None if k == self.n else rows, nstep=self.frame_skip)
        for arr, out in after:
            out[rows] = arr[rows].reshape(k, -1)
        self.elapsed[rows] += 1

    def integration_state(self, i: int) -> np.ndarray:
        """Environment `i`'s full simulation state (`mjSTATE_INTEGRATION`: time, qpos, qvel,
        warm start, controls, ...), wherever it is kept."""
        if self._pool is not None:
            return self._pool.state[i].copy()
        return integration_state(self.models[i], self.datas[i])

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(observations, rewards, terminated) of all rows from the copied state."""
        raise NotImplementedError
