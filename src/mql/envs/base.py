"""The task-family protocol shared by every meta-RL environment in `mql`.

A task family is a `gymnasium.Env` that also carries its tasks:

- `train_tasks`, `test_tasks`: lists of task dicts, drawn once from `np.random.default_rng(seed)`
  at construction (never from the global NumPy RNG). As in PEARL, the family draws
  `n_train + n_test` tasks and uses `tasks[:n_train]` for training and `tasks[-n_test:]` for
  testing (the two-task families therefore train and test on the same two tasks).
- `set_task(task)`: the next `reset()` runs `task`. Task dicts are validated: a task of another
  family, or with a missing key or a wrongly shaped value, raises `ValueError`.
- Episodes end by truncation after `horizon` steps (the env counts its own steps, so no
  gymnasium wrapper sits between the user and `env.unwrapped`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

Task = dict[str, Any]


class TaskFamily:
    """Mixin giving a `gymnasium.Env` a seeded task set, `set_task` and a step-count horizon.

    Subclasses set the class variables and implement `sample_tasks` and `_apply_task`, and call
    `_init_tasks(seed)` at the end of `__init__`, `_start_episode()` in `reset` and
    `_count_step()` in `step` (which returns the `truncated` flag).
    """

    family: ClassVar[str]
    """Registry name, e.g. "cheetah-vel"."""
    horizon: ClassVar[int] = 200
    """Episode length (gymnasium truncation)."""
    n_train: ClassVar[int]
    n_test: ClassVar[int]
    varies: ClassVar[str]
    """One line saying what differs between tasks (shown by `mql envs`)."""

    train_tasks: list[Task]
    test_tasks: list[Task]
    _task: Task
    _elapsed: int = 0

    # -- to implement -------------------------------------------------------------------------
    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """Draw `n` tasks from `rng` (the only source of randomness allowed)."""
        raise NotImplementedError

    def _apply_task(self, task: Task) -> None:
        """Make `task` the current task (reward target or model parameters)."""
        raise NotImplementedError

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected key -> value shape of this family's task dicts (() for a scalar)."""
        raise NotImplementedError

    # -- provided -------------------------------------------------------------------------------
    def _init_tasks(self, seed: int) -> None:
        if self.n_train <= 0 or self.n_test <= 0:
            raise ValueError(f"{self.family}: n_train and n_test must be positive")
        n_total = (
            max(self.n_train, self.n_test) if self._shared_split() else (self.n_train + self.n_test)
        )
        tasks = self.sample_tasks(np.random.default_rng(seed), n_total)
        self.train_tasks = tasks[: self.n_train]
        self.test_tasks = tasks[-self.n_test :]
        self.set_task(self.train_tasks[0])

    def _shared_split(self) -> bool:
        """True for families whose train and test tasks are the same few tasks (e.g. dir)."""
        return False

    def validate_task(self, task: Task) -> None:
        """Raise `ValueError` unless `task` has exactly this family's keys and value shapes."""
        if not isinstance(task, dict):
            raise ValueError(f"{self.family}: a task must be a dict, got {type(task).__name__}")
        shapes = self.task_shapes()
        if set(task) != set(shapes):
            raise ValueError(
                f"{self.family}: task keys {sorted(task)} do not match the expected "
                f"{sorted(shapes)}"
            )
        for key, shape in shapes.items():
            got = np.shape(task[key])
            if got != shape:
                raise ValueError(f"{self.family}: task[{key!r}] has shape {got}, expected {shape}")
            if not np.all(np.isfinite(np.asarray(task[key], dtype=np.float64))):
                raise ValueError(f"{self.family}: task[{key!r}] is not finite")

    def set_task(self, task: Task) -> None:
        """Validate `task` and make it the task that the next `reset()` runs."""
        self.validate_task(task)
        self._task = {k: _copy_value(v) for k, v in task.items()}
        self._apply_task(self._task)

    def get_task(self) -> Task:
        """A copy of the current task."""
        return {k: _copy_value(v) for k, v in self._task.items()}

    def _start_episode(self) -> None:
        self._elapsed = 0

    def _count_step(self) -> bool:
        self._elapsed += 1
        return self._elapsed >= self.horizon


def _copy_value(value: Any) -> Any:
    return np.array(value, dtype=np.float64) if np.ndim(value) > 0 else float(value)
