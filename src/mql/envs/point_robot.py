"""Point robots (PEARL's `point_robot.py`): a 2-D point that must reach a goal.

State `s <- s + a` with the action rescaled from [-1, 1] to [-0.1, 0.1]^2; reward after the
step is `-||s - goal||_2`; horizon 20.

- `point-robot`: goals ~ U[-1, 1]^2, start ~ U[-1, 1]^2 (from the reset seed).
- `sparse-point-robot`: 100 goals evenly spaced on the upper unit half-circle (angles
  `linspace(0, pi, 100)`), shuffled by the seed; start at the origin. The returned reward is the
  dense one (as in PEARL); `info["sparse_reward"] = 1 - d if d <= 0.2 else 0`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np

from mql.envs.base import Task, TaskFamily

MAX_STEP = 0.1
GOAL_RADIUS = 0.2


class PointRobotEnv(TaskFamily, gymnasium.Env):
    family: ClassVar[str] = "point-robot"
    horizon: ClassVar[int] = 20
    n_train: ClassVar[int] = 80
    n_test: ClassVar[int] = 20
    varies: ClassVar[str] = "goal position ~ U[-1, 1]^2"
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, seed: int = 0) -> None:
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._state = np.zeros(2)
        self._goal = np.zeros(2)
        self._init_tasks(seed)

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [{"goal": g} for g in rng.uniform(-1.0, 1.0, size=(n, 2))]

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"goal": (2,)}

    def _apply_task(self, task: Task) -> None:
        self._goal = np.asarray(task["goal"], dtype=np.float64)

    def _initial_state(self) -> np.ndarray:
        return self.np_random.uniform(-1.0, 1.0, size=2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._start_episode()
        self._state = self._initial_state()
        return self._state.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) * MAX_STEP
        self._state = self._state + a
        distance = float(np.linalg.norm(self._state - self._goal))
        reward = -distance
        truncated = self._count_step()
        return self._state.copy(), reward, False, truncated, self._info(distance)

    def _info(self, distance: float) -> dict[str, Any]:
        return {"distance": distance}


class SparsePointRobotEnv(PointRobotEnv):
    family: ClassVar[str] = "sparse-point-robot"
    n_train: ClassVar[int] = 80
    n_test: ClassVar[int] = 20
    varies: ClassVar[str] = "goal on the upper unit half-circle; sparse reward within 0.2"

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        angles = np.linspace(0.0, np.pi, num=n)
        goals = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return [{"goal": goals[i]} for i in rng.permutation(n)]

    def _initial_state(self) -> np.ndarray:
        return np.zeros(2)

    def _info(self, distance: float) -> dict[str, Any]:
        sparse = 1.0 - distance if distance <= GOAL_RADIUS else 0.0
        return {"distance": distance, "sparse_reward": sparse}
