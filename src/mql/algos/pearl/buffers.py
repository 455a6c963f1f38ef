"""Per-task replay buffers of PEARL (oyster's MultiTaskReplayBuffer)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TaskBuffers"]


class TaskBuffers:
    """One ring buffer of transitions per task (oyster's MultiTaskReplayBuffer).

    A row is [obs, action, reward, sparse_reward, next_obs, done] (float32). Storage of a task
    grows on demand (doubling) up to `capacity` rows, then wraps around.
    """

    def __init__(self, n_tasks: int, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.n_tasks, self.capacity = n_tasks, capacity
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.width = 2 * obs_dim + act_dim + 3
        self._rows: list[np.ndarray] = [np.zeros((0, self.width), np.float32)] * n_tasks
        self._size = np.zeros(n_tasks, np.int64)
        self._ptr = np.zeros(n_tasks, np.int64)

    def size(self, task: int) -> int:
        return int(self._size[task])

    def clear(self, task: int) -> None:
        self._size[task] = 0
        self._ptr[task] = 0

    def add(self, task: int, rows: np.ndarray) -> None:
        """Append rows (n, width) to `task`'s buffer."""
        rows = rows[-self.capacity :]  # only the newest `capacity` rows can be kept
        n = len(rows)
        need = min(self.capacity, self.size(task) + n)
        if len(self._rows[task]) < need:
            new = min(self.capacity, max(need, 2 * len(self._rows[task]), 256))
            grown = np.zeros((new, self.width), np.float32)
            grown[: self.size(task)] = self._rows[task][: self.size(task)]
            self._rows[task] = grown
        idx = (self._ptr[task] + np.arange(n)) % self.capacity
        self._rows[task][idx] = rows
        self._ptr[task] = (self._ptr[task] + n) % self.capacity
        self._size[task] = need

    def sample(self, rng: np.random.Generator, task: int, n: int) -> np.ndarray:
        """`n` rows of `task` drawn uniformly with replacement."""
        size = self.size(task)
        if size == 0:
            raise ValueError(f"task {task} has no transitions to sample")
        return self._rows[task][rng.integers(0, size, size=n)]

    def rows(self, task: int) -> np.ndarray:
        """All stored rows of `task` (storage order)."""
        return self._rows[task][: self.size(task)]

    def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        o, a = self.obs_dim, self.act_dim
        return {
            "obs": rows[..., :o],
            "action": rows[..., o : o + a],
            "reward": rows[..., o + a],
            "sparse_reward": rows[..., o + a + 1],
            "next_obs": rows[..., o + a + 2 : 2 * o + a + 2],
            "done": rows[..., -1],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self._size.copy(),
            "ptr": self._ptr.copy(),
            "rows": {f"{t:05d}": self.rows(t).copy() for t in range(self.n_tasks)},
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        size, ptr = np.asarray(data["size"], np.int64), np.asarray(data["ptr"], np.int64)
        if size.shape != (self.n_tasks,) or np.any(size > self.capacity):
            raise ValueError("buffer state does not match this config (tasks or capacity)")
        for t in range(self.n_tasks):
            rows = np.asarray(data["rows"][f"{t:05d}"], np.float32).reshape(-1, self.width)
            if len(rows) != size[t]:
                raise ValueError(f"buffer state of task {t} has {len(rows)} rows, not {size[t]}")
            self._rows[t] = rows.copy()
        self._size, self._ptr = size.copy(), ptr.copy()
