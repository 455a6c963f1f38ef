"""Meta-World ML1 / ML10 / ML45 (Yu et al., CoRL 2019; the `metaworld` package 3.1.1, v3
tasks) as `mql` task families. Needs the optional extra: `pip install -e '.[metaworld]'`.

- `metaworld-ml1-<task>`: one environment class; Meta-World's 50 training and 50 test goal
  (and object) positions, from `metaworld.ML1("<task>-v3", seed=seed)` (test goals come from
  `seed + 1` there).
- `metaworld-ml10`, `metaworld-ml45`: 10 (45) training classes and 5 held-out test classes,
  50 goals each (`metaworld.ML10(seed=seed)`, `ML45`): 500 / 250 and 2250 / 250 tasks. Every
  class has the same 39-d observation and 4-d action space, so one family holds them all; it
  builds one Meta-World environment per class on first use and steps the current task's.

Porting notes (what this module does about Meta-World's known pitfalls):

- Tasks. A task is `{"class": index into env.classes, "rand_vec": (6,)}`: Meta-World's
  `rand_vec` (object and goal positions; 3 or 6 numbers by class) zero-padded to 6, so tasks
  are plain arrays like every family's. `set_task` rebuilds Meta-World's `Task` from it. The
  train/test split is the benchmark's own (`train_tasks`, `test_tasks`), not
  `tasks[:n_train]` / `tasks[-n_test:]`; `env.task_class(task)` names a task's class.
- Goals are hidden (`partially_observable=True`, the ML setting): the last 3 observation
  entries are zeros. Reward is Meta-World's v2 reward (0 to 10 per step).
- Episodes are 500 steps and end by truncation (`truncated=True` at step 500, Meta-World's
  `max_path_length`; Metaworld#236, #405); `terminated` is always False (Meta-World never
  terminates, also not on success).
- Success is `info["success"]` (a float, 1.0 on a step where the task is solved); an
  episode succeeds if it is 1 at any step (Meta-World's evaluation; Metaworld#202), which
  `episode_success` computes and the protocol reports.
- Seeds. Task sets come from the family's `seed` only. Meta-World ignores `reset(seed=)` and
  draws from NumPy's global RNG (Metaworld#555, #350, #461) where it samples goals (the
  benchmark constructors, which seed and restore it) and in `reset` when a task's positions
  are not frozen; a v3 environment whose task is set resets to the same state every time (no
  start-state noise: the task fixes object and goal positions). So that no Meta-World version
  can make a start state depend on, or disturb, the caller's global RNG state, building the
  benchmark and its environments, `set_task` and `reset` run with a private global-RNG state
  (seeded at each `reset` from the family's `np_random`, itself seeded by `reset(seed=)`)
  swapped in and the caller's restored afterwards. `step` runs without the swap: Meta-World
  3.1.1 draws no random numbers there (tested: a rollout neither depends on nor moves the
  caller's global state), and the swap (~60 us per get/set of NumPy's state) would cost a third
  of a step. Same task, same reset seed, same actions: the same trajectory.
- Actions are clipped to [-1, 1] before Meta-World sees them (it clips the hand's xyz itself,
  not the gripper effort).
- Building ML10 runs Meta-World's goal sampling for 15 classes (seconds) and ML45 for 50
  (tens of seconds); the task sets are cached per (family, seed) within a process, so the
  several environments an agent builds share one construction.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import pickle
import sys
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any, ClassVar

import gymnasium
import numpy as np

import mql.envs
from mql.envs import metaworld_spec
from mql.envs.base import Task, TaskFamily
from mql.envs.metaworld_spec import MetaWorldSpec

RAND_VEC_SIZE = 6
"""The longest `rand_vec` of any v3 class (3 or 6 numbers); tasks pad to this."""
_TASK_KEYS = {"rand_vec", "env_cls", "partially_observable"}


class PrivateGlobalRNG:
    """A state of NumPy's global RNG kept apart from the caller's: `active()` swaps it in for
    the duration of a call and restores the caller's state afterwards."""

    def __init__(self, seed: int) -> None:
        self._state: tuple[Any, ...] = np.random.RandomState(seed).get_state()

    def reseed(self, seed: int) -> None:
        self._state = np.random.RandomState(seed).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        saved = np.random.get_state()
        np.random.set_state(self._state)
        try:
            yield
        finally:
            self._state = np.random.get_state()
            np.random.set_state(saved)


def _metaworld(family: str) -> Any:
    """The `metaworld` package, imported on first use: it is the optional extra (this module's
    classes and their class variables load without it), and it takes ~0.5 s to import."""
    mql.envs.check_available(family)
    return importlib.import_module("metaworld")


def _benchmark(spec: MetaWorldSpec, seed: int) -> Any:
    metaworld = _metaworld(spec.family)
    if spec.benchmark == "ML1":
        return metaworld.ML1(f"{spec.train_classes[0]}-v3", seed=seed)
    return {"ML10": metaworld.ML10, "ML45": metaworld.ML45}[spec.benchmark](seed=seed)


@functools.lru_cache(maxsize=8)
def _task_sets(family: str, seed: int) -> tuple[tuple[tuple[str, tuple[float, ...]], ...], ...]:
    """Meta-World's (train, test) tasks of `family` under `seed` as (class, rand_vec) pairs."""
    spec = metaworld_spec.SPECS[family]
    with PrivateGlobalRNG(seed).active():
        bench = _benchmark(spec, seed)
    out = []
    for tasks in (bench.train_tasks, bench.test_tasks):
        pairs = []
        for task in tasks:
            data = pickle.loads(task.data)
            if set(data) != _TASK_KEYS or not data["partially_observable"]:
                raise RuntimeError(
                    f"{family}: unexpected Meta-World task data {sorted(data)} "
                    f"(metaworld {metaworld_version()}; this module follows 3.1.1)"
                )
            pairs.append((task.env_name.removesuffix("-v3"), tuple(map(float, data["rand_vec"]))))
        out.append(tuple(pairs))
    return tuple(out)


def metaworld_version() -> str:
    return version(metaworld_spec.EXTRA)


def episode_success(successes: Any) -> bool:
    """Meta-World's episode success: `info["success"]` was 1 at any step (not only the last)."""
    return bool(np.any(np.asarray(successes, dtype=np.float64) >= 1.0))


class MetaWorldEnv(TaskFamily, gymnasium.Env):
    """A Meta-World ML benchmark as a task family (subclasses set `mw_spec`).

    The Meta-World environment of a class is built when a `reset` first runs one of its tasks
    (an environment that only ever runs one class, as in a batched evaluation, builds one)."""

    mw_spec: ClassVar[MetaWorldSpec]
    horizon: ClassVar[int] = metaworld_spec.HORIZON
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, seed: int = 0) -> None:
        self.classes: tuple[str, ...] = self.mw_spec.classes
        self.train_classes: tuple[str, ...] = self.mw_spec.train_classes
        self.test_classes: tuple[str, ...] = self.mw_spec.test_classes
        self._class_index = {name: i for i, name in enumerate(self.classes)}
        self._envs: dict[int, Any] = {}
        self._current: Any = None
        self._rng_state = PrivateGlobalRNG(seed)
        self.observation_space = _observation_space(_metaworld(self.family))
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (metaworld_spec.ACT_SIZE,), np.float32)
        self._init_tasks(seed)

    # -- tasks --------------------------------------------------------------------------------
    def _init_tasks(self, seed: int) -> None:
        train, test = _task_sets(self.family, int(seed))
        self._rand_vec_size = {name: len(vec) for name, vec in train + test}
        self.train_tasks = [self._task(name, vec) for name, vec in train]
        self.test_tasks = [self._task(name, vec) for name, vec in test]
        if (len(self.train_tasks), len(self.test_tasks)) != (self.n_train, self.n_test):
            raise RuntimeError(
                f"{self.family}: Meta-World gave {len(self.train_tasks)} / "
                f"{len(self.test_tasks)} tasks, expected {self.n_train} / {self.n_test}"
            )
        self.set_task(self.train_tasks[0])

    def _task(self, class_name: str, rand_vec: tuple[float, ...]) -> Task:
        padded = np.zeros(RAND_VEC_SIZE)
        padded[: len(rand_vec)] = rand_vec
        return {"class": float(self._class_index[class_name]), "rand_vec": padded}

    def task_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"class": (), "rand_vec": (RAND_VEC_SIZE,)}

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        index = float(task["class"])
        if not index.is_integer() or not 0 <= index < len(self.classes):
            raise ValueError(
                f"{self.family}: task['class'] must index one of its {len(self.classes)} "
                f"classes, got {index}"
            )
        name = self.classes[int(index)]
        size = self._rand_vec_size[name]
        if np.any(np.asarray(task["rand_vec"])[size:] != 0.0):
            raise ValueError(
                f"{self.family}: {name} tasks have {size} rand_vec entries; the padding must "
                "be zero"
            )

    def task_class(self, task: Task) -> str:
        """The Meta-World class name of `task` (e.g. "reach")."""
        self.validate_task(task)
        return self.classes[int(task["class"])]

    def _apply_task(self, task: Task) -> None:
        """Nothing to do until `reset`, which hands the task to its class's environment."""

    def _class_env(self, index: int) -> Any:
        if index not in self._envs:
            classes = _metaworld(self.family).env_dict.ALL_V3_ENVIRONMENTS
            with self._rng_state.active():
                env = classes[f"{self.classes[index]}-v3"]()
            if not _same_box(env.observation_space, self.observation_space):
                raise RuntimeError(
                    f"{self.family}: {self.classes[index]} has another observation space"
                )
            self._envs[index] = env
        return self._envs[index]

    # -- episodes -----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._start_episode()
        self._rng_state.reseed(int(self.np_random.integers(2**32)))
        index = int(self._task["class"])
        env = self._class_env(index)
        size = self._rand_vec_size[self.classes[index]]
        data = {"rand_vec": np.asarray(self._task["rand_vec"])[:size].copy(), "env_cls": type(env)}
        data["partially_observable"] = True
        task = _metaworld(self.family).types.Task(
            env_name=f"{self.classes[index]}-v3", data=pickle.dumps(data)
        )
        with self._rng_state.active():
            env.set_task(task)
            obs, info = env.reset()
        self._current = env
        return np.asarray(obs, dtype=np.float64), dict(info)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._current is None:
            raise RuntimeError(f"{self.family}: call reset() before step()")
        a = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}, expected {self.action_space.shape}")
        obs, reward, _, _, info = self._current.step(a)  # draws nothing from NumPy (module doc)
        truncated = self._count_step()
        info = {**info, "success": float(info["success"])}
        return np.asarray(obs, dtype=np.float64), float(reward), False, truncated, info

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self._current = None


def _observation_space(metaworld: Any) -> gymnasium.spaces.Box:
    """Meta-World's observation space with the goal hidden (`SawyerXYZEnv`'s
    `sawyer_observation_space`, partially observable): hand xyz within `_HAND_SPACE`, gripper
    in [-1, 1], objects unbounded, twice (this step and the last), then the goal, fixed at 0."""
    hand = metaworld.sawyer_xyz_env.SawyerXYZEnv._HAND_SPACE
    objects = np.full(14, np.inf)
    low = np.hstack([hand.low, -1.0, -objects, hand.low, -1.0, -objects, np.zeros(3)])
    high = np.hstack([hand.high, 1.0, objects, hand.high, 1.0, objects, np.zeros(3)])
    return gymnasium.spaces.Box(low, high, dtype=np.float64)


def _same_box(a: gymnasium.spaces.Box, b: gymnasium.spaces.Box) -> bool:
    return bool(np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high))


def _family_class(spec: MetaWorldSpec) -> type[MetaWorldEnv]:
    attrs = {
        "mw_spec": spec,
        "family": spec.family,
        "n_train": spec.n_train,
        "n_test": spec.n_test,
        "varies": spec.varies,
        "__module__": __name__,
        "__qualname__": spec.class_name,
        "__doc__": f"`{spec.family}`: {spec.varies}.",
    }
    return type(spec.class_name, (MetaWorldEnv,), attrs)


_module = sys.modules[__name__]
for _spec in metaworld_spec.SPECS.values():
    setattr(_module, _spec.class_name, _family_class(_spec))

__all__ = [
    "RAND_VEC_SIZE",
    "MetaWorldEnv",
    "PrivateGlobalRNG",
    "episode_success",
    "metaworld_version",
]
