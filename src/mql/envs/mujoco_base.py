"""Shared base of the MuJoCo locomotion task families (cheetah, ant, humanoid).

`LocomotionEnv` combines the `TaskFamily` protocol with gymnasium's `MujocoEnv` and the model
files bundled with gymnasium (`gymnasium/envs/mujoco/assets/*.xml`, loaded by full path).

Action convention (as in PEARL, whose `NormalizedBoxEnv` sat around every MuJoCo task):

- `action_space` is `Box(-1, 1, (nu,), float32)`. An action is clipped to [-1, 1] and rescaled
  linearly to the actuator range, `ctrl = mid + a * half` with `mid`, `half` the centre and
  half-width of `model.actuator_ctrlrange`. The rescaled control is what MuJoCo simulates.
- Control costs are computed on the rescaled (actuator) control, i.e. on `data.ctrl` after the
  step. For the cheetah and the ant the actuator range is [-1, 1], so this equals the clipped
  action; for the humanoid it is [-0.4, 0.4] (as in the original, whose cost used `data.ctrl`).
- Observations are float64 and are not normalised; rewards are not normalised.

Positions read after a step (`data.xpos`, `data.xipos`) are those of MuJoCo's last forward pass
inside `mj_step`, as with `get_body_com` in the original code and in gymnasium (read here through
the torso's body id, cached on first use as `torso_id`). Contact forces `data.cfrc_ext` are
filled by `mj_rnePostConstraint`, which `_simulate` calls after stepping as gymnasium's
`do_simulation` does, unless the family sets `post_constraint = False` because nothing it
returns reads `cfrc_ext`/`cfrc_int`/`cacc` (the half-cheetah): that call only writes those
outputs, never the simulation state, so skipping it changes no number (tested). `_simulate`
writes `data.ctrl` and calls `mj_step` itself instead of `do_simulation`, whose shape check
`action_to_ctrl` already does. These per-step savings serve every sampler and MQL's training.
`half_cheetah.xml` uses the compiler attribute `settotalmass`, which MuJoCo 4 deprecates (it warns
on stderr and appends to `MUJOCO_LOG.TXT` on every load). The model is therefore compiled without
the attribute and rescaled with `mj_setTotalmass` + `mj_setConst`, which gives a bit-identical
model (checked field by field and by simulation against the plain load).
Episodes are truncated after `horizon` (200) steps by the family itself.

`LocomotionBatch` steps several environments of one family together for the on-policy sampler
(`mql.onpolicy.shard`): per environment only the minimum runs in Python (write the control, one
`mj_step`, copy the state the observation and reward need into rows of per-shard arrays through
views made once), and the action clipping, observations, rewards and terminations are computed
with NumPy over all of them. A family opts in by setting `batch` to its subclass (the cheetah
and ant families do); the results are bit-identical to calling each environment's `step`
(tests/test_envs_batch.py), and each environment's state, step count included, is left as its
own `step` would leave it (the `info` dicts are not built). Families that set
`thread_pool_step` (the half-cheetah) can instead have all their physics stepped in one call on
MuJoCo's own C thread pool (`mujoco.batch`, MuJoCo 4 and later; the Python loop above is the
fallback), the same numbers again; their state then lives in the pool, not in each `MjData`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from mql.envs.base import TaskFamily

ASSETS_DIR = Path(gymnasium.__file__).resolve().parent / "envs" / "mujoco" / "assets"


def asset_path(name: str) -> str:
    """Full path of one of gymnasium's bundled MuJoCo model files."""
    path = ASSETS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"gymnasium MuJoCo asset not found: {path}")
    return str(path)


_SETTOTALMASS = re.compile(r'\s+settotalmass\s*=\s*"([^"]*)"')


def load_model(path: str) -> mujoco.MjModel:
    """Compile the model at `path`, applying a deprecated `settotalmass` attribute by hand."""
    text = Path(path).read_text()
    match = _SETTOTALMASS.search(text)
    if match is None:
        return mujoco.MjModel.from_xml_path(path)
    model = mujoco.MjModel.from_xml_string(text[: match.start()] + text[match.end() :])
    mujoco.mj_setTotalmass(model, float(match.group(1)))
    mujoco.mj_setConst(model, mujoco.MjData(model))
    return model


class LocomotionEnv(TaskFamily, MujocoEnv):
    """A `TaskFamily` on a gymnasium MuJoCo model with actions normalised to [-1, 1]."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"],
    }
    post_constraint: ClassVar[bool] = True
    """Call `mj_rnePostConstraint` after each step (fills `cfrc_ext`, `cfrc_int`, `cacc`)."""
    batch: ClassVar[type[LocomotionBatch] | None] = None
    """The family's batched stepper (`LocomotionBatch` subclass), None where it has none."""
    thread_pool_step: ClassVar[bool] = False
    """Its batched stepper may run the physics on MuJoCo's thread pool (`mujoco.batch`): the
    model does not depend on the task and no returned quantity needs `mj_rnePostConstraint`."""

    def __init__(self, xml_file: str, frame_skip: int, render_mode: str | None = None) -> None:
        MujocoEnv.__init__(
            self, asset_path(xml_file), frame_skip, observation_space=None, render_mode=render_mode
        )
        self.metadata = {**type(self).metadata, "render_fps": int(np.round(1.0 / self.dt))}
        size = self.obs_size()
        got = self._get_obs().shape
        if got != (size,):
            raise RuntimeError(
                f"{type(self).__name__}: observation has shape {got}, expected ({size},)"
            )
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (size,), np.float64)

    @cached_property
    def torso_id(self) -> int:
        """Id of the body "torso": `data.xpos[torso_id]` is `get_body_com("torso")` without the
        name lookup (cached on first use, which may be inside `MujocoEnv.__init__`)."""
        return int(self.model.body("torso").id)

    def obs_size(self) -> int:
        """The observation size (may be computed from `self.model`)."""
        raise NotImplementedError

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = load_model(self.fullpath)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    # -- actions ----------------------------------------------------------------------------------
    def _set_action_space(self) -> gymnasium.spaces.Box:
        if not np.all(self.model.actuator_ctrllimited):
            raise RuntimeError(f"{type(self).__name__}: every actuator must be ctrl-limited")
        low, high = self.model.actuator_ctrlrange.copy().T
        self._ctrl_mid = (low + high) / 2.0
        self._ctrl_half = (high - low) / 2.0
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        return self.action_space

    def action_to_ctrl(self, action: np.ndarray) -> np.ndarray:
        """Clip `action` to [-1, 1] and rescale it linearly to the actuator control range."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self._ctrl_mid.shape:
            raise ValueError(f"action has shape {a.shape}, expected ({self.model.nu},)")
        # minimum(maximum(.)) is np.clip's result (NaN included) at half its call overhead.
        return self._ctrl_mid + np.minimum(np.maximum(a, -1.0), 1.0) * self._ctrl_half

    def _simulate(self, action: np.ndarray) -> np.ndarray:
        """Run `frame_skip` MuJoCo steps under `action`; return the applied control.

        What gymnasium's `do_simulation` does, minus its repeated shape check, and minus
        `mj_rnePostConstraint` when the family's `post_constraint` is False.
        """
        self.data.ctrl[:] = self.action_to_ctrl(action)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        if self.post_constraint:
            mujoco.mj_rnePostConstraint(self.model, self.data)
        return self.data.ctrl.copy()

    # -- episodes ---------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._start_episode()
        return super().reset(seed=seed, options=options)

    def _reset_uniform_normal(self, scale: float = 0.1) -> np.ndarray:
        """Initial qpos + U(-scale, scale), initial qvel + N(0, 1) * scale (cheetah and ant)."""
        qpos = self.init_qpos + self.np_random.uniform(-scale, scale, size=self.model.nq)
        qvel = self.init_qvel + self.np_random.standard_normal(self.model.nv) * scale
        self.set_state(qpos, qvel)
        return self._get_obs()

    def reset_model(self) -> np.ndarray:
        return self._reset_uniform_normal(0.1)

    def _get_obs(self) -> np.ndarray:
        raise NotImplementedError


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

    def __init__(self, envs: Sequence[LocomotionEnv], threads: int = 0) -> None:
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
        pooled = threads >= 1 and type(first).thread_pool_step and thread_pool_available()
        self.threads = threads if pooled else 0
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
        m, d = self.models[i], self.datas[i]
        out = np.empty(mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(m, d, out, mujoco.mjtState.mjSTATE_INTEGRATION)
        return out

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(observations, rewards, terminated) of all rows from the copied state."""
        raise NotImplementedError
