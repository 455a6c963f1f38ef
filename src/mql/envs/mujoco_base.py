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

`LocomotionBatch` (`mql.envs.locomotion_batch`) steps several environments of one family
together for the on-policy sampler; a family opts in through `batch` and `thread_pool_step`.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from mql.envs.base import TaskFamily

if TYPE_CHECKING:
    from mql.envs.locomotion_batch import LocomotionBatch

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
