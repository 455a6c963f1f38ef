"""Humanoid running in a direction (PEARL's `humanoid_dir.py`).

Model: gymnasium's bundled `humanoid.xml` (timestep 0.003, 17 motors with control range
[-0.4, 0.4]), frame_skip 5, so dt = 0.015. Actions in [-1, 1] are clipped and rescaled linearly
to [-0.4, 0.4]; the control cost is computed on the applied control `data.ctrl`, i.e. on the
rescaled value (as in the original, whose cost used `data.ctrl` behind PEARL's action
normalisation). See `mql.envs.mujoco_base`.

- Observation: `qpos[2:]` (22) ++ `qvel` (23) ++ `cinert` (14 x 10) ++ `cvel` (14 x 6)
  ++ `qfrc_actuator` (23) ++ `cfrc_ext` (14 x 6) = 376 with today's model, the same size as
  the original's (`OBS_SIZE`; the constructor computes it from the model).
- Reward: `0.25 * (u . delta_com_xy) / model.opt.timestep - 0.1 * sum(ctrl^2)
  - min(5e-7 * sum(cfrc_ext^2), 10) + 5`, with `u = (cos angle, sin angle)` and `delta_com_xy`
  the change over the step of the mass-weighted centre of mass of the bodies
  (`sum(body_mass * xipos) / sum(body_mass)`). As in the original, the displacement is divided
  by the physics timestep (0.003), not by dt (0.015): the forward term is 1.25 x the velocity
  along `u`, not 0.25 x.
- Terminates when the torso height `qpos[2]` leaves [1.0, 2.0]. Horizon 200.
- Reset: `init_qpos + U(-0.01, 0.01)`, `init_qvel + U(-0.01, 0.01)` from the reset seed.
- Tasks: `angle ~ U[0, 2 pi)`; 130 tasks, `tasks[:100]` train, `tasks[-30:]` test.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mql.envs.base import Task
from mql.envs.mujoco_base import LocomotionEnv

OBS_SIZE = 376
"""Observation size with gymnasium's bundled humanoid.xml (14 bodies incl. the world, nq 24,
nv 23); `HumanoidDirEnv.obs_size()` computes it from the loaded model."""


class HumanoidDirEnv(LocomotionEnv):
    family: ClassVar[str] = "humanoid-dir"
    n_train: ClassVar[int] = 100
    n_test: ClassVar[int] = 30
    varies: ClassVar[str] = "running direction angle ~ U[0, 2 pi)"

    FORWARD_WEIGHT: ClassVar[float] = 0.25
    CTRL_COST_WEIGHT: ClassVar[float] = 0.1
    CONTACT_COST_WEIGHT: ClassVar[float] = 5e-7
    CONTACT_COST_MAX: ClassVar[float] = 10.0
    ALIVE_BONUS: ClassVar[float] = 5.0
    HEALTHY_Z: ClassVar[tuple[float, float]] = (1.0, 2.0)
    RESET_NOISE: ClassVar[float] = 0.01

    _direction: np.ndarray

    def __init__(self, seed: int = 0, render_mode: str | None = None) -> None:
        LocomotionEnv.__init__(self, "humanoid.xml", 5, render_mode=render_mode)
        self._init_tasks(seed)

    def obs_size(self) -> int:
        """qpos[2:] + qvel + cinert (10 per body) + cvel (6) + qfrc_actuator + cfrc_ext (6)."""
        m = self.model
        return (m.nq - 2) + m.nv + 10 * m.nbody + 6 * m.nbody + m.nv + 6 * m.nbody

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [{"angle": float(t)} for t in rng.uniform(0.0, 2.0 * np.pi, size=n)]

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"angle": ()}

    def _apply_task(self, task: Task) -> None:
        angle = float(task["angle"])
        self._direction = np.array([np.cos(angle), np.sin(angle)])

    def _get_obs(self) -> np.ndarray:
        d = self.data
        return np.concatenate(
            [
                d.qpos.flat[2:],
                d.qvel.flat,
                d.cinert.flat,
                d.cvel.flat,
                d.qfrc_actuator.flat,
                d.cfrc_ext.flat,
            ]
        )

    def _mass_center_xy(self) -> np.ndarray:
        mass = self.model.body_mass[:, None]
        return (np.sum(mass * self.data.xipos, axis=0) / np.sum(mass))[:2].copy()

    def reset_model(self) -> np.ndarray:
        c = self.RESET_NOISE
        qpos = self.init_qpos + self.np_random.uniform(-c, c, size=self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-c, c, size=self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        com_before = self._mass_center_xy()
        ctrl = self._simulate(action)
        com_after = self._mass_center_xy()
        forward_reward = (
            self.FORWARD_WEIGHT
            * float(np.dot(self._direction, com_after - com_before))
            / self.model.opt.timestep
        )
        ctrl_cost = self.CTRL_COST_WEIGHT * float(np.sum(np.square(ctrl)))
        contact_cost = min(
            self.CONTACT_COST_WEIGHT * float(np.sum(np.square(self.data.cfrc_ext))),
            self.CONTACT_COST_MAX,
        )
        reward = forward_reward - ctrl_cost - contact_cost + self.ALIVE_BONUS
        z = float(self.data.qpos[2])
        lo, hi = self.HEALTHY_Z
        terminated = not (lo <= z <= hi)
        truncated = self._count_step()
        info = {
            "forward_reward": forward_reward,
            "ctrl_cost": ctrl_cost,
            "contact_cost": contact_cost,
            "alive_bonus": self.ALIVE_BONUS,
            "x_position": float(com_after[0]),
            "y_position": float(com_after[1]),
        }
        return self._get_obs(), reward, terminated, truncated, info
