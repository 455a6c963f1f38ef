"""Walker2d and Hopper with randomised physical parameters (PEARL's `rand_param_envs`).

Each task multiplies the model's DEFAULT parameters elementwise; the task dict holds the
multipliers under the MuJoCo field names:

- `body_mass` (nbody,) and `body_inertia` (nbody, 3): x 1.5**U(-3, 3)
- `dof_damping` (nv,): x 1.3**U(-3, 3)
- `geom_friction` (ngeom, 3): x 1.5**U(-3, 3)

`set_task` sets `field = default * multiplier` from a copy of the defaults taken at
construction, so multipliers never compound across task switches. As in the original, every
entry is randomised, including the world body (whose mass and inertia are 0, so its multipliers
have no effect) and the floor geom's friction. Unlike the original (mujoco-py on MuJoCo 1.31,
which wrote the fields and nothing else), `mujoco.mj_setConst` is then run on a scratch
`MjData` so that the derived constants (subtree masses, inverse weights used for contact
softness, `stat.meanmass`) match the new masses; it is a deterministic function of the base
fields, so `set_task(a); set_task(b); set_task(a)` gives back exactly the first model.

Dynamics, as in PEARL: `model.opt.timestep = 0.004` (gymnasium's bundled walker2d.xml and
hopper.xml say 0.002; we override it), `frame_skip = 4`, so `dt = 0.016`. The agent's action in
[-1, 1] is clipped and rescaled linearly to `model.actuator_ctrlrange` (which is [-1, 1] for
both bundled models, so the rescaling is the identity there); the control cost uses the
rescaled control. Reward per step::

    (x_after - x_before) / dt + 1 - 1e-3 * sum(ctrl**2)

(the alive bonus 1 is paid on every step, including the terminating one). Observation:
`qpos[1:] ++ clip(qvel, -10, 10)` (walker 17, hopper 11). Termination after the step:

- walker: not (0.8 < height < 2 and |angle| < 1)
- hopper: not (state finite and all |state_vector()[2:]| < 100 and height > 0.7 and
  |angle| < 0.2)

with `height = qpos[1]`, `angle = qpos[2]`. Reset: `init_qpos`, `init_qvel` plus
U(-0.005, 0.005) noise from the env's `np_random`. Horizon 200 (truncation).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import gymnasium
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from mql.envs.base import Task, TaskFamily

_ASSETS = os.path.join(os.path.dirname(gymnasium.envs.mujoco.mujoco_env.__file__), "assets")

TIMESTEP = 0.004
FRAME_SKIP = 4
ALIVE_BONUS = 1.0
CTRL_COST = 1e-3
RESET_NOISE = 5e-3
QVEL_CLIP = 10.0

# field -> base of the log-uniform multiplier base**U(-3, 3)
RAND_FIELDS: dict[str, float] = {
    "body_mass": 1.5,
    "body_inertia": 1.5,
    "dof_damping": 1.3,
    "geom_friction": 1.5,
}
LOG_SCALE_LIMIT = 3.0


class _RandParamsEnv(TaskFamily, MujocoEnv):
    """Shared machinery of the randomised-parameter families (see the module docstring)."""

    horizon: ClassVar[int] = 200
    n_train: ClassVar[int] = 40
    n_test: ClassVar[int] = 10
    varies: ClassVar[str] = (
        "body mass, inertia, friction x 1.5^U(-3,3); joint damping x 1.3^U(-3,3)"
    )
    xml_file: ClassVar[str]
    obs_size: ClassVar[int]
    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array", "depth_array"],
        "render_fps": int(np.round(1.0 / (TIMESTEP * FRAME_SKIP))),
    }

    def __init__(self, seed: int = 0, render_mode: str | None = None) -> None:
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (self.obs_size,), np.float64)
        MujocoEnv.__init__(
            self,
            os.path.join(_ASSETS, self.xml_file),
            FRAME_SKIP,
            observation_space=observation_space,
            render_mode=render_mode,
            default_camera_config={
                "trackbodyid": 2,
                "distance": 3.0,
                "lookat": np.array((0.0, 0.0, 1.15)),
                "elevation": -20.0,
            },
        )
        self._ctrl_low, self._ctrl_high = self.model.actuator_ctrlrange.copy().T
        self._defaults = {f: getattr(self.model, f).copy() for f in RAND_FIELDS}
        self._scratch = mujoco.MjData(self.model)
        self._init_tasks(seed)

    # -- MujocoEnv hooks --------------------------------------------------------------------------
    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model, _ = super()._initialize_simulation()
        model.opt.timestep = TIMESTEP
        return model, mujoco.MjData(model)

    def _set_action_space(self) -> gymnasium.spaces.Box:
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        return self.action_space

    # -- TaskFamily --------------------------------------------------------------------------------
    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {f: tuple(self._defaults[f].shape) for f in RAND_FIELDS}

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        shapes = self.task_shapes()
        return [
            {
                f: base ** rng.uniform(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT, size=shapes[f])
                for f, base in RAND_FIELDS.items()
            }
            for _ in range(n)
        ]

    def _apply_task(self, task: Task) -> None:
        for f in RAND_FIELDS:
            getattr(self.model, f)[:] = self._defaults[f] * np.asarray(task[f], dtype=np.float64)
        mujoco.mj_setConst(self.model, self._scratch)

    # -- gymnasium ---------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._start_episode()
        return super().reset(seed=seed, options=options)

    def reset_model(self) -> np.ndarray:
        qpos = self.init_qpos + self.np_random.uniform(-RESET_NOISE, RESET_NOISE, self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-RESET_NOISE, RESET_NOISE, self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()

    def rescale_action(self, action: np.ndarray) -> np.ndarray:
        """Clip `action` to [-1, 1] and map it linearly onto the actuator control range."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return self._ctrl_low + 0.5 * (a + 1.0) * (self._ctrl_high - self._ctrl_low)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        ctrl = self.rescale_action(action)
        x_before = float(self.data.qpos[0])
        self.do_simulation(ctrl, self.frame_skip)
        x_after = float(self.data.qpos[0])
        forward = (x_after - x_before) / self.dt
        ctrl_cost = CTRL_COST * float(np.sum(np.square(ctrl)))
        reward = forward + ALIVE_BONUS - ctrl_cost
        terminated = self.is_terminated()
        truncated = self._count_step()
        info = {
            "reward_forward": forward,
            "reward_alive": ALIVE_BONUS,
            "reward_ctrl": -ctrl_cost,
            "x_position": x_after,
            "height": float(self.data.qpos[1]),
            "angle": float(self.data.qpos[2]),
        }
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), reward, terminated, truncated, info

    def _get_obs(self) -> np.ndarray:
        qvel = np.clip(self.data.qvel, -QVEL_CLIP, QVEL_CLIP)
        return np.concatenate([self.data.qpos[1:], qvel]).astype(np.float64)

    def is_terminated(self) -> bool:
        """Whether the current MuJoCo state ends the episode."""
        raise NotImplementedError


class WalkerParamsEnv(_RandParamsEnv):
    """Walker2d with randomised mass, inertia, damping and friction (PEARL's walker-rand-params)."""

    family: ClassVar[str] = "walker-params"
    xml_file: ClassVar[str] = "walker2d.xml"
    obs_size: ClassVar[int] = 17

    def is_terminated(self) -> bool:
        height, angle = float(self.data.qpos[1]), float(self.data.qpos[2])
        return not (0.8 < height < 2.0 and abs(angle) < 1.0)


class HopperParamsEnv(_RandParamsEnv):
    """Hopper with randomised mass, inertia, damping and friction (PEARL's hopper-rand-params)."""

    family: ClassVar[str] = "hopper-params"
    xml_file: ClassVar[str] = "hopper.xml"
    obs_size: ClassVar[int] = 11

    def is_terminated(self) -> bool:
        state = self.state_vector()
        height, angle = float(self.data.qpos[1]), float(self.data.qpos[2])
        healthy = (
            bool(np.isfinite(state).all())
            and bool((np.abs(state[2:]) < 100.0).all())
            and height > 0.7
            and abs(angle) < 0.2
        )
        return not healthy
