"""Ant task families (PEARL's `ant_dir.py` / `ant_goal.py`).

Model: gymnasium's bundled `ant.xml` (timestep 0.01, motor gear 150, control range [-1, 1]; the
constructor checks these), frame_skip 5, so dt = 0.05. Actions in [-1, 1] are clipped and rescaled
to the actuator range (here [-1, 1], so the control equals the clipped action); control costs
are computed on the applied control `data.ctrl` (see `mql.envs.mujoco_base`). Contact costs use
`data.cfrc_ext` (14 bodies x 6 = 84 values), filled by `mj_rnePostConstraint` after the step.
Reset: `init_qpos + U(-0.1, 0.1)`, `init_qvel + N(0, 1) * 0.1` from the reset seed. Horizon 200.

- `ant-dir`: observation `qpos[2:]` ++ `qvel` (27). Reward
  `v_xy . (cos angle, sin angle) - 0.5 * sum(ctrl^2) - 5e-4 * sum(clip(cfrc_ext, -1, 1)^2) + 1`,
  with `v_xy` the change of the torso's xy position over the step divided by dt. Terminates when
  the state is not finite or the torso height `qpos[2]` leaves [0.2, 1.0]. Tasks: `angle` 0
  (forward) and pi (backward), in that fixed order, shared by train and test.
- `ant-goal`: observation `qpos` (15) ++ `qvel` (14) ++ `clip(cfrc_ext, -1, 1)` (84) = 113.
  Reward `-L1(torso_xy - goal) - 0.1 * sum(ctrl^2) - 5e-4 * sum(clip(cfrc_ext, -1, 1)^2)`, with
  the torso position after the step. Never terminates. Tasks: `goal = 3 * sqrt(U) * (cos a, sin a)`,
  `a ~ U[0, 2 pi)`, `U ~ U[0, 1)`; 180 tasks, `tasks[:150]` train, `tasks[-30:]` test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mql.envs.base import Task
from mql.envs.locomotion_batch import LocomotionBatch
from mql.envs.mujoco_base import LocomotionEnv

CONTACT_COST_WEIGHT = 5e-4
TIMESTEP = 0.01
GEAR = 150.0


class _AntBatch(LocomotionBatch):
    """Ants stepped together (`LocomotionBatch`): the state copied after the step is
    qpos ++ qvel ++ cfrc_ext (flattened), and the torso's xy position before and after."""

    def __init__(self, envs: Sequence[_AntEnv], threads: int = 0) -> None:
        super().__init__(envs, threads)  # the ant needs mj_rnePostConstraint: never pooled
        m = envs[0].model
        self.nq, self.nv = m.nq, m.nv
        self.state = self.rows(m.nq + m.nv + m.nbody * 6)
        self.xy = self.rows(2)
        self.torso: tuple[Any, ...] = (envs[0].torso_id, slice(0, 2))
        self.after += [
            ("qpos", (), self.state[:, : m.nq]),
            ("qvel", (), self.state[:, m.nq : m.nq + m.nv]),
            ("cfrc_ext", (), self.state[:, m.nq + m.nv :]),
            ("xpos", self.torso, self.xy),
        ]

    def contact(self) -> tuple[np.ndarray, np.ndarray]:
        """clip(cfrc_ext, -1, 1) per row and the contact cost."""
        clipped = np.clip(self.state[:, self.nq + self.nv :], -1, 1)
        return clipped, CONTACT_COST_WEIGHT * np.sum(np.square(clipped), axis=1)


class _AntEnv(LocomotionEnv):
    OBS_SIZE: ClassVar[int]

    def __init__(self, seed: int = 0, render_mode: str | None = None) -> None:
        LocomotionEnv.__init__(self, "ant.xml", 5, render_mode=render_mode)
        if not (
            np.isclose(self.model.opt.timestep, TIMESTEP)
            and np.allclose(self.model.actuator_gear[:, 0], GEAR)
            and np.allclose(self.model.actuator_ctrlrange, [-1.0, 1.0])
        ):
            raise RuntimeError(
                "the bundled ant.xml no longer has timestep 0.01, gear 150 and "
                "control range [-1, 1]"
            )
        self._init_tasks(seed)

    def obs_size(self) -> int:
        return self.OBS_SIZE

    def _torso_xy(self) -> np.ndarray:
        return self.data.xpos[self.torso_id, :2].copy()

    def _contact_cost(self) -> float:
        return CONTACT_COST_WEIGHT * float(np.sum(np.square(np.clip(self.data.cfrc_ext, -1, 1))))


class _AntDirBatch(_AntBatch):
    """`AntDirEnv.step` over environments: forward velocity, survive bonus, termination."""

    def __init__(self, envs: Sequence[AntDirEnv], threads: int = 0) -> None:
        super().__init__(envs, threads)
        self.xy_before = self.rows(2)
        self.before.append(("xpos", self.torso, self.xy_before))
        self.direction = np.array([e._direction for e in envs])
        cls = type(envs[0])
        self.ctrl_weight, self.survive = cls.CTRL_COST_WEIGHT, cls.SURVIVE_REWARD
        self.healthy_z = cls.HEALTHY_Z

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v_xy = (self.xy - self.xy_before) / self.dt
        # np.dot row by row: a vectorised product-sum may round differently (FMA)
        forward = np.array([np.dot(v, d) for v, d in zip(v_xy, self.direction, strict=True)])
        ctrl_cost = self.ctrl_weight * np.sum(np.square(self.ctrl), axis=1)
        _, contact_cost = self.contact()
        reward = forward - ctrl_cost - contact_cost + self.survive
        qpos_qvel = self.state[:, : self.nq + self.nv]
        z = self.state[:, 2]
        lo, hi = self.healthy_z
        healthy = np.isfinite(qpos_qvel).all(axis=1) & (lo <= z) & (z <= hi)
        return qpos_qvel[:, 2:], reward, ~healthy


class _AntGoalBatch(_AntBatch):
    """`AntGoalEnv.step` over environments: L1 distance to each environment's goal."""

    def __init__(self, envs: Sequence[AntGoalEnv], threads: int = 0) -> None:
        super().__init__(envs, threads)
        self.goal = np.array([e._goal for e in envs])
        self.ctrl_weight = type(envs[0]).CTRL_COST_WEIGHT

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        distance = np.sum(np.abs(self.xy - self.goal), axis=1)
        ctrl_cost = self.ctrl_weight * np.sum(np.square(self.ctrl), axis=1)
        clipped, contact_cost = self.contact()
        reward = -distance - ctrl_cost - contact_cost
        obs = np.concatenate((self.state[:, : self.nq + self.nv], clipped), axis=1)
        return obs, reward, np.zeros(self.n, bool)


class AntDirEnv(_AntEnv):
    family: ClassVar[str] = "ant-dir"
    n_train: ClassVar[int] = 2
    n_test: ClassVar[int] = 2
    varies: ClassVar[str] = "running direction: forward (angle 0) or backward (angle pi)"
    OBS_SIZE: ClassVar[int] = 27

    ANGLES: ClassVar[tuple[float, ...]] = (0.0, float(np.pi))
    CTRL_COST_WEIGHT: ClassVar[float] = 0.5
    SURVIVE_REWARD: ClassVar[float] = 1.0
    HEALTHY_Z: ClassVar[tuple[float, float]] = (0.2, 1.0)

    _direction: np.ndarray
    batch = _AntDirBatch

    def _shared_split(self) -> bool:
        return True

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """The two angles in a fixed order (repeated cyclically if `n` > 2); `rng` is unused."""
        return [{"angle": self.ANGLES[i % len(self.ANGLES)]} for i in range(n)]

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"angle": ()}

    def _apply_task(self, task: Task) -> None:
        angle = float(task["angle"])
        self._direction = np.array([np.cos(angle), np.sin(angle)])

    def _get_obs(self) -> np.ndarray:
        return np.concatenate((self.data.qpos[2:], self.data.qvel))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        xy_before = self._torso_xy()
        ctrl = self._simulate(action)
        xy_after = self._torso_xy()
        v_xy = (xy_after - xy_before) / self.dt
        forward_reward = float(np.dot(v_xy, self._direction))
        ctrl_cost = self.CTRL_COST_WEIGHT * float(np.sum(np.square(ctrl)))
        contact_cost = self._contact_cost()
        reward = forward_reward - ctrl_cost - contact_cost + self.SURVIVE_REWARD
        z = float(self.data.qpos[2])
        lo, hi = self.HEALTHY_Z
        healthy = bool(np.isfinite(self.state_vector()).all() and lo <= z <= hi)
        truncated = self._count_step()
        info = {
            "forward_reward": forward_reward,
            "ctrl_cost": ctrl_cost,
            "contact_cost": contact_cost,
            "survive_reward": self.SURVIVE_REWARD,
            "x_velocity": float(v_xy[0]),
            "y_velocity": float(v_xy[1]),
            "x_position": float(xy_after[0]),
            "y_position": float(xy_after[1]),
        }
        return self._get_obs(), reward, not healthy, truncated, info


class AntGoalEnv(_AntEnv):
    family: ClassVar[str] = "ant-goal"
    n_train: ClassVar[int] = 150
    n_test: ClassVar[int] = 30
    varies: ClassVar[str] = "goal position, uniform in the disc of radius 3"
    OBS_SIZE: ClassVar[int] = 113

    CTRL_COST_WEIGHT: ClassVar[float] = 0.1
    GOAL_RADIUS: ClassVar[float] = 3.0

    _goal: np.ndarray
    batch = _AntGoalBatch

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        a = rng.uniform(0.0, 2.0 * np.pi, size=n)
        r = self.GOAL_RADIUS * np.sqrt(rng.uniform(0.0, 1.0, size=n))
        goals = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
        return [{"goal": g} for g in goals]

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"goal": (2,)}

    def _apply_task(self, task: Task) -> None:
        self._goal = np.asarray(task["goal"], dtype=np.float64).copy()

    def _get_obs(self) -> np.ndarray:
        d = self.data
        return np.concatenate((d.qpos, d.qvel, np.clip(d.cfrc_ext, -1, 1).ravel()))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        ctrl = self._simulate(action)
        xy = self._torso_xy()
        distance = float(np.sum(np.abs(xy - self._goal)))
        goal_reward = -distance
        ctrl_cost = self.CTRL_COST_WEIGHT * float(np.sum(np.square(ctrl)))
        contact_cost = self._contact_cost()
        reward = goal_reward - ctrl_cost - contact_cost
        truncated = self._count_step()
        info = {
            "goal_reward": goal_reward,
            "ctrl_cost": ctrl_cost,
            "contact_cost": contact_cost,
            "l1_distance": distance,
            "x_position": float(xy[0]),
            "y_position": float(xy[1]),
        }
        return self._get_obs(), reward, False, truncated, info
