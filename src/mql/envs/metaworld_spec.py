"""The Meta-World task families as data: names, classes, sizes (no Meta-World import).

`mql envs`, `mql --help`, configs and presets read this module; only building an environment
(`mql.envs.meta_world`) needs the optional extra (`pip install -e '.[metaworld]'`). The class
lists are Meta-World 3.1.1's (`metaworld.env_dict`, v3 tasks, "-v3" dropped); the tests of the
extra check them against the installed package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXTRA = "metaworld"
"""The pip extra that installs Meta-World (and pins MuJoCo to the version it requires)."""
INSTALL_HINT = "pip install -e '.[metaworld]' (Meta-World 3.1.1, which pins mujoco==3.3.0)"
MODULE = "mql.envs.meta_world"
"""The module holding the environment classes (it imports `metaworld`)."""

HORIZON = 500
"""Meta-World's `max_path_length`: episodes end by truncation after 500 steps."""
OBS_SIZE = 39
"""hand xyz, gripper opening, 2 objects' xyz + quaternion, the same of the previous step, goal
xyz (zeros: the ML benchmarks hide the goal)."""
ACT_SIZE = 4
"""hand displacement xyz and gripper effort, each in [-1, 1]."""
GOALS_PER_CLASS = 50
"""Meta-World's `_N_GOALS`: goal (and object) positions drawn per class and split."""

ML1_TASKS: tuple[str, ...] = (
    "assembly", "basketball", "bin-picking", "box-close", "button-press-topdown",
    "button-press-topdown-wall", "button-press", "button-press-wall", "coffee-button",
    "coffee-pull", "coffee-push", "dial-turn", "disassemble", "door-close", "door-lock",
    "door-open", "door-unlock", "hand-insert", "drawer-close", "drawer-open", "faucet-open",
    "faucet-close", "hammer", "handle-press-side", "handle-press", "handle-pull-side",
    "handle-pull", "lever-pull", "pick-place-wall", "pick-out-of-hole", "pick-place",
    "plate-slide", "plate-slide-side", "plate-slide-back", "plate-slide-back-side",
    "peg-insert-side", "peg-unplug-side", "soccer", "stick-push", "stick-pull", "push",
    "push-wall", "push-back", "reach", "reach-wall", "shelf-place", "sweep-into", "sweep",
    "window-open", "window-close",
)  # fmt: skip
ML10_TRAIN: tuple[str, ...] = (
    "reach", "push", "pick-place", "door-open", "drawer-close", "button-press-topdown",
    "peg-insert-side", "window-open", "sweep", "basketball",
)  # fmt: skip
ML10_TEST: tuple[str, ...] = (
    "drawer-open",
    "door-close",
    "shelf-place",
    "sweep-into",
    "lever-pull",
)
ML45_TEST: tuple[str, ...] = ("bin-picking", "box-close", "hand-insert", "door-lock", "door-unlock")
ML45_TRAIN: tuple[str, ...] = (
    "assembly", "basketball", "button-press-topdown", "button-press-topdown-wall",
    "button-press", "button-press-wall", "coffee-button", "coffee-pull", "coffee-push",
    "dial-turn", "disassemble", "door-close", "door-open", "drawer-close", "drawer-open",
    "faucet-open", "faucet-close", "hammer", "handle-press-side", "handle-press",
    "handle-pull-side", "handle-pull", "lever-pull", "pick-place-wall", "pick-out-of-hole",
    "push-back", "pick-place", "plate-slide", "plate-slide-side", "plate-slide-back",
    "plate-slide-back-side", "peg-insert-side", "peg-unplug-side", "soccer", "stick-push",
    "stick-pull", "push-wall", "push", "reach-wall", "reach", "shelf-place", "sweep-into",
    "sweep", "window-open", "window-close",
)  # fmt: skip


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


@dataclass(frozen=True)
class MetaWorldSpec:
    """One Meta-World task family: its benchmark, classes and names."""

    family: str
    """Registry name, e.g. "metaworld-ml1-reach"."""
    benchmark: str
    """"ML1", "ML10" or "ML45"."""
    train_classes: tuple[str, ...]
    test_classes: tuple[str, ...]
    class_name: str
    """The environment class in `mql.envs.meta_world`."""
    gym_id: str

    @property
    def n_train(self) -> int:
        return len(self.train_classes) * GOALS_PER_CLASS

    @property
    def n_test(self) -> int:
        return len(self.test_classes) * GOALS_PER_CLASS

    @property
    def classes(self) -> tuple[str, ...]:
        """Every environment class of the family, training classes first, each once."""
        return tuple(dict.fromkeys(self.train_classes + self.test_classes))

    @property
    def varies(self) -> str:
        if self.benchmark == "ML1":
            return (
                f"Meta-World ML1 {self.train_classes[0]}: goal/object positions, hidden "
                f"({GOALS_PER_CLASS} train, {GOALS_PER_CLASS} test)"
            )
        return (
            f"Meta-World {self.benchmark}: {len(self.train_classes)} train / "
            f"{len(self.test_classes)} test classes x {GOALS_PER_CLASS} goals, goal hidden"
        )

    def table_row(self) -> dict[str, Any]:
        """The family's row of `mql envs` (mql.envs.table), without building it."""
        return {
            "name": self.family,
            "obs": OBS_SIZE,
            "act": ACT_SIZE,
            "horizon": HORIZON,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "varies": self.varies,
        }


def _specs() -> dict[str, MetaWorldSpec]:
    specs = [
        MetaWorldSpec(
            f"metaworld-ml1-{task}",
            "ML1",
            (task,),
            (task,),
            f"MetaWorldML1{_camel(task)}Env",
            f"mql/MetaWorldML1{_camel(task)}-v0",
        )
        for task in ML1_TASKS
    ]
    specs.append(
        MetaWorldSpec(
            "metaworld-ml10", "ML10", ML10_TRAIN, ML10_TEST, "MetaWorldML10Env",
            "mql/MetaWorldML10-v0",
        )
    )  # fmt: skip
    specs.append(
        MetaWorldSpec(
            "metaworld-ml45", "ML45", ML45_TRAIN, ML45_TEST, "MetaWorldML45Env",
            "mql/MetaWorldML45-v0",
        )
    )  # fmt: skip
    return {s.family: s for s in specs}


SPECS: dict[str, MetaWorldSpec] = _specs()
"""Family name -> spec, the ML1 families in Meta-World's order, then ML10 and ML45."""


def is_metaworld(family: str) -> bool:
    """Whether `family` is one of the Meta-World task families."""
    return family in SPECS


__all__ = [
    "ACT_SIZE",
    "EXTRA",
    "GOALS_PER_CLASS",
    "HORIZON",
    "INSTALL_HINT",
    "ML1_TASKS",
    "ML10_TEST",
    "ML10_TRAIN",
    "ML45_TEST",
    "ML45_TRAIN",
    "OBS_SIZE",
    "SPECS",
    "MetaWorldSpec",
    "is_metaworld",
]
