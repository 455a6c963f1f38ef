"""Meta-RL task families, ported to today's MuJoCo and gymnasium.

```python
import mql.envs
env = mql.envs.make("cheetah-vel", seed=0)
env.train_tasks, env.test_tasks
env.set_task(env.test_tasks[0]); obs, info = env.reset(seed=1)
```
Every family is also registered with gymnasium as `mql/<Name>-v0`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import gymnasium

from mql.envs import metaworld_spec
from mql.envs.base import Task, TaskFamily
from mql.errors import MissingExtraError

# name -> (module, class, gymnasium id)
_FAMILIES: dict[str, tuple[str, str, str]] = {
    "cheetah-vel": ("mql.envs.cheetah", "CheetahVelEnv", "mql/CheetahVel-v0"),
    "cheetah-vel-ood": ("mql.envs.cheetah", "CheetahVelOODEnv", "mql/CheetahVelOOD-v0"),
    "cheetah-dir": ("mql.envs.cheetah", "CheetahDirEnv", "mql/CheetahDir-v0"),
    "ant-dir": ("mql.envs.ant", "AntDirEnv", "mql/AntDir-v0"),
    "ant-goal": ("mql.envs.ant", "AntGoalEnv", "mql/AntGoal-v0"),
    "humanoid-dir": ("mql.envs.humanoid", "HumanoidDirEnv", "mql/HumanoidDir-v0"),
    "walker-params": ("mql.envs.rand_params", "WalkerParamsEnv", "mql/WalkerParams-v0"),
    "hopper-params": ("mql.envs.rand_params", "HopperParamsEnv", "mql/HopperParams-v0"),
    "point-robot": ("mql.envs.point_robot", "PointRobotEnv", "mql/PointRobot-v0"),
    "sparse-point-robot": (
        "mql.envs.point_robot",
        "SparsePointRobotEnv",
        "mql/SparsePointRobot-v0",
    ),
}
# Meta-World ML1 / ML10 / ML45 (the optional extra `metaworld`; mql.envs.metaworld_spec)
_FAMILIES.update(
    {n: (metaworld_spec.MODULE, s.class_name, s.gym_id) for n, s in metaworld_spec.SPECS.items()}
)
# name -> (top-level module it needs, the install hint) for families of an optional extra
_EXTRAS: dict[str, tuple[str, str]] = {
    n: ("metaworld", metaworld_spec.INSTALL_HINT) for n in metaworld_spec.SPECS
}


# families registered at run time by `register` (your own)
_REGISTERED: dict[str, type] = {}


def names() -> list[str]:
    """The registered task-family names."""
    return [*_FAMILIES, *_REGISTERED]


def family_class(name: str) -> type:
    """The environment class of family `name`; unknown names raise `ValueError`. Its class
    variables (horizon, task counts) are readable without the family's optional extra."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _FAMILIES:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(names())}")
    module, cls, _ = _FAMILIES[name]
    return getattr(importlib.import_module(module), cls)


def check_available(name: str) -> None:
    """Raise `mql.errors.MissingExtraError` (one line: what to install) when family `name`
    needs an optional extra that is not installed (Meta-World); nothing otherwise."""
    needs, hint = _EXTRAS.get(name, ("", ""))
    if needs and importlib.util.find_spec(needs) is None:
        raise MissingExtraError(f"environment {name!r} needs {needs!r}: {hint}")


def register(name: str, cls: type, gym_id: str | None = None) -> None:
    """Add a task family of your own (a `gymnasium.Env` with `TaskFamily` mixed in) under
    `name`, so `make`, configs and agents accept it in this process (child processes of
    `mql train --seeds` and `mql sweep` do not see it: register it in a module they import, or
    train from Python). `gym_id` also registers it with gymnasium."""
    if name in _FAMILIES:
        raise ValueError(f"{name!r} is a built-in task family")
    if not issubclass(cls, TaskFamily):
        raise TypeError(f"{cls.__name__} does not mix in mql.envs.base.TaskFamily")
    _REGISTERED[name] = cls
    if gym_id is not None and gym_id not in gymnasium.registry:
        gymnasium.register(id=gym_id, entry_point=cls)


def make(name: str, seed: int = 0, **kwargs: Any) -> Any:
    """Build family `name` with its train/test tasks drawn from `seed` (a family whose optional
    extra is missing raises `mql.errors.MissingExtraError`)."""
    check_available(name)
    return family_class(name)(seed=seed, **kwargs)


for _name, (_module, _cls, _gym_id) in _FAMILIES.items():
    if _gym_id not in gymnasium.registry:
        gymnasium.register(id=_gym_id, entry_point=f"{_module}:{_cls}")

__all__ = ["Task", "TaskFamily", "check_available", "family_class", "make", "names", "register"]
