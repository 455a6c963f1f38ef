"""Half-cheetah task families (PEARL's `half_cheetah_vel.py` / `half_cheetah_dir.py`).

Model: gymnasium's bundled `half_cheetah.xml` (timestep 0.01), frame_skip 5, so dt = 0.05.
Actions in [-1, 1] are clipped and rescaled to the actuator range (here [-1, 1], so the control
equals the clipped action); the control cost is computed on the applied control `data.ctrl`
(see `mql.envs.mujoco_base`).

- Observation (20): `qpos[1:]` (8) ++ `qvel` (9) ++ torso body position `data.xpos` (3).
- `v_x = (qpos[0]_after - qpos[0]_before) / dt`, `ctrl_cost = 0.05 * sum(ctrl^2)`.
- Reset: `init_qpos + U(-0.1, 0.1)`, `init_qvel + N(0, 1) * 0.1` from the reset seed.
- Horizon 200; never terminates.

Families:

- `cheetah-vel`: reward `-|v_x - velocity| - ctrl_cost`; 130 tasks `velocity ~ U[0, 3)`,
  `tasks[:100]` train, `tasks[-30:]` test.
- `cheetah-vel-ood` (out-of-distribution split; the paper's code for it was never released):
  same reward; 100 train velocities from `U([0, 1.5) ∪ [2.5, 3.0))` (a segment chosen with
  probability proportional to its length, i.e. uniform on the union) and 30 test velocities from
  `U[1.5, 2.5)`. Both sets come from one generator seeded with `seed` (train first, then test);
  `sample_tasks` draws from the training distribution, `sample_test_tasks` from the test one.
- `cheetah-dir`: reward `direction * v_x - ctrl_cost`; the two tasks `direction = -1` and `+1`
  (in that fixed order) are both the train and the test tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mql.envs.base import Task
from mql.envs.locomotion_batch import LocomotionBatch
from mql.envs.mujoco_base import LocomotionEnv

CTRL_COST_WEIGHT = 0.05
OBS_SIZE = 20


class _CheetahBatch(LocomotionBatch):
    """Half-cheetahs stepped together (`LocomotionBatch`): the state copied after the step is
    qpos ++ qvel ++ the torso's position, the observation its columns 1 onwards."""

    def __init__(self, envs: Sequence[_CheetahEnv], threads: int = 0) -> None:
        super().__init__(envs, threads)
        nq, nv = envs[0].model.nq, envs[0].model.nv
        self.x_before = self.rows(1)
        self.state = self.rows(nq + nv + 3)
        self.before.append(("qpos", (slice(0, 1),), self.x_before))
        self.after += [
            ("qpos", (), self.state[:, :nq]),
            ("qvel", (), self.state[:, nq : nq + nv]),
            ("xpos", (envs[0].torso_id,), self.state[:, nq + nv :]),
        ]
        self.task = np.array([e._task_value() for e in envs])
        self.forward = type(envs[0])._forward_rewards

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v_x = (self.state[:, 0] - self.x_before[:, 0]) / self.dt
        ctrl_cost = CTRL_COST_WEIGHT * np.sum(np.square(self.ctrl), axis=1)
        reward = self.forward(v_x, self.task) - ctrl_cost
        return self.state[:, 1:], reward, np.zeros(self.n, bool)


class _CheetahEnv(LocomotionEnv):
    """Half-cheetah dynamics; subclasses define the tasks and the forward reward."""

    batch = _CheetahBatch
    thread_pool_step = True  # the task sets only the reward; nothing reads cfrc_ext

    def __init__(self, seed: int = 0, render_mode: str | None = None) -> None:
        LocomotionEnv.__init__(self, "half_cheetah.xml", 5, render_mode=render_mode)
        self._init_tasks(seed)

    post_constraint: ClassVar[bool] = False  # nothing here reads cfrc_ext / cfrc_int / cacc

    def obs_size(self) -> int:
        return OBS_SIZE

    def _get_obs(self) -> np.ndarray:
        d = self.data
        return np.concatenate((d.qpos[1:], d.qvel, d.xpos[self.torso_id]))

    def _forward_reward(self, v_x: float) -> float:
        raise NotImplementedError

    def _task_value(self) -> float:
        """The task's number that `_forward_rewards` takes (velocity or direction)."""
        raise NotImplementedError

    @staticmethod
    def _forward_rewards(v_x: np.ndarray, task: np.ndarray) -> np.ndarray:
        """`_forward_reward` over environments, each with its `_task_value`."""
        raise NotImplementedError

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        x_before = float(self.data.qpos[0])
        ctrl = self._simulate(action)
        x_after = float(self.data.qpos[0])
        v_x = (x_after - x_before) / self.dt
        forward_reward = self._forward_reward(v_x)
        ctrl_cost = CTRL_COST_WEIGHT * float(np.sum(np.square(ctrl)))
        reward = forward_reward - ctrl_cost
        truncated = self._count_step()
        info = {
            "forward_velocity": v_x,
            "forward_reward": forward_reward,
            "ctrl_cost": ctrl_cost,
            "x_position": x_after,
        }
        return self._get_obs(), reward, False, truncated, info


class CheetahVelEnv(_CheetahEnv):
    family: ClassVar[str] = "cheetah-vel"
    n_train: ClassVar[int] = 100
    n_test: ClassVar[int] = 30
    varies: ClassVar[str] = "target forward velocity ~ U[0, 3)"

    _velocity: float = 0.0

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [{"velocity": float(v)} for v in rng.uniform(0.0, 3.0, size=n)]

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"velocity": ()}

    def _apply_task(self, task: Task) -> None:
        self._velocity = float(task["velocity"])

    def _forward_reward(self, v_x: float) -> float:
        return -abs(v_x - self._velocity)

    def _task_value(self) -> float:
        return self._velocity

    @staticmethod
    def _forward_rewards(v_x: np.ndarray, task: np.ndarray) -> np.ndarray:
        return -np.abs(v_x - task)


class CheetahVelOODEnv(CheetahVelEnv):
    family: ClassVar[str] = "cheetah-vel-ood"
    n_train: ClassVar[int] = 100
    n_test: ClassVar[int] = 30
    varies: ClassVar[str] = "target velocity: train U([0,1.5) ∪ [2.5,3)), test U[1.5,2.5)"

    TRAIN_SEGMENTS: ClassVar[tuple[tuple[float, float], ...]] = ((0.0, 1.5), (2.5, 3.0))
    TEST_RANGE: ClassVar[tuple[float, float]] = (1.5, 2.5)

    def _init_tasks(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.train_tasks = self.sample_tasks(rng, self.n_train)
        self.test_tasks = self.sample_test_tasks(rng, self.n_test)
        self.set_task(self.train_tasks[0])

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """Training velocities: uniform on the union of `TRAIN_SEGMENTS`."""
        # One uniform draw over the total length, mapped onto the segments: the same as picking a
        # segment with probability proportional to its length, then a uniform point in it.
        lengths = np.array([hi - lo for lo, hi in self.TRAIN_SEGMENTS])
        u = rng.uniform(0.0, float(lengths.sum()), size=n)
        ends = np.cumsum(lengths)
        velocities = []
        for x in u:
            i = min(int(np.searchsorted(ends, x, side="right")), len(lengths) - 1)
            start = ends[i] - lengths[i]
            velocities.append(self.TRAIN_SEGMENTS[i][0] + (x - start))
        return [{"velocity": float(v)} for v in velocities]

    def sample_test_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """Test velocities: uniform on `TEST_RANGE`."""
        lo, hi = self.TEST_RANGE
        return [{"velocity": float(v)} for v in rng.uniform(lo, hi, size=n)]


class CheetahDirEnv(_CheetahEnv):
    family: ClassVar[str] = "cheetah-dir"
    n_train: ClassVar[int] = 2
    n_test: ClassVar[int] = 2
    varies: ClassVar[str] = "running direction: backward (-1) or forward (+1)"

    DIRECTIONS: ClassVar[tuple[float, ...]] = (-1.0, 1.0)
    _direction: float = 1.0

    def _shared_split(self) -> bool:
        return True

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """The two directions in a fixed order (repeated cyclically if `n` > 2); `rng` is unused."""
        return [{"direction": self.DIRECTIONS[i % len(self.DIRECTIONS)]} for i in range(n)]

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"direction": ()}

    def _apply_task(self, task: Task) -> None:
        self._direction = float(task["direction"])

    def _forward_reward(self, v_x: float) -> float:
        return self._direction * v_x

    def _task_value(self) -> float:
        return self._direction

    @staticmethod
    def _forward_rewards(v_x: np.ndarray, task: np.ndarray) -> np.ndarray:
        return task * v_x
