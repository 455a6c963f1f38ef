"""What every algorithm's config shares: the run's identity, its budget and its evaluation.

`BaseConfig` holds the fields the driver, the evaluation protocol, run directories and plots
read for every algorithm; an algorithm's config (`algos/<name>/config.py`) subclasses it, adds
its own fields and its presets (`preset_values`), and extends `validate`. Config modules import
no JAX, Flax, optax or scikit-learn: the CLI reads them before deciding to load any of that.

Presets are data resolved by `resolve(env, algo, preset, **overrides)`: the preset's values for
the environment, then the overrides, then `validate`. `to_dict`/`from_dict` are the JSON form
stored in a run directory's config.json.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

Preset = Literal["paper", "released"]
PRESET_NAMES: tuple[str, ...] = ("paper", "released")
EvalProtocol = Literal["paired", "metaworld"]

METAWORLD_ADAPT_EPISODES = 10
"""Meta-World's evaluation (Yu et al. 2019): 10 adaptation episodes per test goal ..."""
METAWORLD_SCORED_EPISODES = 3
"""... then 3 scored episodes (`eval_protocol = "metaworld"`, `mql eval --protocol metaworld`)."""

__all__ = [
    "METAWORLD_ADAPT_EPISODES",
    "METAWORLD_SCORED_EPISODES",
    "PRESET_NAMES",
    "BaseConfig",
    "EvalProtocol",
    "Preset",
    "check_choices",
    "check_ranges",
]


def check_ranges(
    cfg: Any,
    positive: tuple[str, ...] = (),
    nonneg: tuple[str, ...] = (),
    above_zero: tuple[str, ...] = (),
) -> None:
    """Raise ValueError naming the first field of `cfg` out of range: counts that must be
    positive, then counts that must be >= 0, then values that must be > 0 (NaN fails)."""
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")
    for name in nonneg:
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    for name in above_zero:
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(cfg, name)}")


METAWORLD_EVAL_ONE_TASK_AT_A_TIME: dict[str, Any] = {"eval_batched": False}
"""What every algorithm's Meta-World preset sets (ours): a batched evaluation builds an
environment per scored episode, and a Meta-World one takes ~21 MB and 0.1-0.3 s to build (150
ML1 environments: 3.1 GB, 47 s measured), ~16 GB for a final evaluation of ML10/ML45's 250 test
goals x 3 episodes."""


def check_choices(cfg: Any, choices: dict[str, tuple[str, ...]]) -> None:
    """Raise ValueError for the first field of `cfg` whose value is not among its choices."""
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(
                f"{name} must be one of {', '.join(allowed)}, got {getattr(cfg, name)!r}"
            )


@dataclass
class BaseConfig:
    """The fields every algorithm has (subclasses redeclare defaults where theirs differ)."""

    env: str = "cheetah-vel"
    """Task family (see `mql envs`)."""
    algo: str = ""
    """Algorithm name (see `mql.algos.registry`)."""
    preset: Preset = "paper"
    """Hyperparameter preset: paper or released."""
    seed: int = 0
    """Root seed: network init, task sets, resets, exploration and minibatches derive from it."""
    task_seed: int | None = None
    """Seed of the environment's train/test task sets (default: `seed`)."""
    total_steps: int = 5_000_000
    """Environment steps of meta-training."""

    # evaluation (the protocol of mql.evaluate)
    eval_every: int = 10_000
    """Evaluate every this many environment steps."""
    eval_episodes: int = 2
    """Episodes per task scored after adaptation (and zero-shot)."""
    eval_tasks: int = 5
    """Test tasks evaluated periodically (0: all); the final evaluation always uses all."""
    eval_train_tasks: int = 2
    """Training tasks also evaluated (zero-shot and adapted) at each evaluation."""
    final_eval_tasks: int = 0
    """Test tasks of the final evaluation (0: all)."""
    eval_batched: bool = False
    """Evaluate all tasks of an evaluation together (their scored episodes stepped at once,
    their adaptations in one compiled program where the algorithm has one) instead of one task
    at a time; the same numbers (`mql.evaluate`). Off by default: on the 2-core CPU it measured
    0.8-1.1x one task at a time for MQL (an evaluation is compute-bound in its eq. 19 updates,
    docs/performance.md "Evaluation"); it is the form for an accelerator."""
    eval_protocol: EvalProtocol = "paired"
    """paired: the algorithm's own adaptation, then `eval_episodes` scored episodes per task;
    metaworld: Meta-World's evaluation for every evaluation of the run, 10 adaptation episodes
    then 3 scored episodes per task (requires eval_episodes 3)."""
    eval_adapt_episodes: tuple[int, ...] = ()
    """Also score the return after each of these numbers K of new-task episodes (the
    adaptation curve; 0 is the zero-shot policy), e.g. 0 1 2."""
    checkpoint_every: int = 0
    """Also keep the checkpoint every this many environment steps, as
    `checkpoints/step_<steps>.ckpt`, for evaluating a run's history later (`mql eval
    --checkpoint`); 0: keep only `latest.ckpt` (written at each evaluation and at the end)."""

    # the algorithm names this config class serves, and its name in messages (per subclass)
    ALGOS: ClassVar[tuple[str, ...]] = ()
    LABEL: ClassVar[str] = "base"

    # -- presets -------------------------------------------------------------------------------
    @classmethod
    def preset_values(cls, env: str, preset: str) -> dict[str, Any]:
        """Field values of `preset` for `env` (without env/algo/preset themselves)."""
        raise NotImplementedError(f"{cls.__name__} defines no presets")

    @classmethod
    def resolve(cls, env: str, algo: str, preset: str = "paper", **overrides: Any) -> Self:
        """The config of `algo` on `env` under `preset`, then `overrides`, validated."""
        cls._check_fields(overrides, allowed_extra=("algo",))
        overrides.pop("algo", None)
        values = {**cls.preset_values(env, preset), **overrides}
        cfg = cls(env=env, algo=algo, preset=preset, **values)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    # -- checks --------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range field (subclasses extend this)."""
        import mql.envs  # imports gymnasium and MuJoCo, which the CLI's --help does not need

        if self.env not in mql.envs.names():
            raise ValueError(
                f"unknown environment {self.env!r}; known: {', '.join(mql.envs.names())}"
            )
        if self.algo not in self.ALGOS:
            raise ValueError(
                f"{type(self).__name__}.algo must be one of {', '.join(self.ALGOS)}, "
                f"got {self.algo!r}"
            )
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"unknown preset {self.preset!r}; known: {', '.join(PRESET_NAMES)}")
        check_choices(self, {"eval_protocol": ("paired", "metaworld")})
        if self.eval_protocol == "metaworld" and self.eval_episodes != METAWORLD_SCORED_EPISODES:
            raise ValueError(
                f"eval_protocol metaworld scores {METAWORLD_SCORED_EPISODES} episodes per task; "
                f"set eval_episodes {METAWORLD_SCORED_EPISODES} (got {self.eval_episodes})"
            )
        check_ranges(
            self,
            positive=("total_steps", "eval_every", "eval_episodes"),
            nonneg=(
                "seed",
                "eval_tasks",
                "eval_train_tasks",
                "final_eval_tasks",
                "checkpoint_every",
            ),
        )
        if any(k < 0 for k in self.eval_adapt_episodes):
            raise ValueError(f"eval_adapt_episodes must be >= 0, got {self.eval_adapt_episodes}")
        if len(set(self.eval_adapt_episodes)) != len(self.eval_adapt_episodes):
            raise ValueError(f"eval_adapt_episodes lists a value twice: {self.eval_adapt_episodes}")
        if self.task_seed is not None and self.task_seed < 0:
            raise ValueError(f"task_seed must be >= 0, got {self.task_seed}")

    def warmup_steps(self, n_train: int, horizon: int) -> int:
        """Environment steps collected before the first update (0: none)."""
        return 0

    def preflight(self) -> None:
        """Checks that need more than the field values (that native kernels build, say), run
        before a run directory is made; raise in one line. Nothing for most algorithms."""

    @property
    def adapts(self) -> bool:
        """Whether the protocol scores an adapted policy after the zero-shot one."""
        return False

    def as_variant(self, algo: str) -> Self:
        """This config evaluated as `algo`, a variant with the same meta-training (`mql eval
        --adapt-as`); only the algorithm itself by default."""
        if algo != self.algo:
            raise ValueError(f"a {self.algo} run cannot be evaluated as {algo}")
        return self

    # -- JSON form -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuple fields become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of `to_dict`; unknown keys raise ValueError; the result is validated."""
        cls._check_fields(data)
        data = cls._upgrade(dict(data))
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            if typing.get_origin(hints[name]) is tuple and isinstance(value, list):
                data[name] = tuple(value)
        cfg = cls(**data)
        cfg.validate()
        return cfg

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Fill fields that configs saved by older versions lack.

        Runs saved before `eval_batched` existed evaluated one task at a time, so `mql eval` and
        re-evaluations of them keep that schedule (and reproduce their evaluations exactly)."""
        data.setdefault("eval_batched", False)
        return data

    @classmethod
    def _check_fields(cls, data: dict[str, Any], allowed_extra: tuple[str, ...] = ()) -> None:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - set(allowed_extra))
        if unknown:
            raise ValueError(f"unknown {cls.LABEL} config field(s): {', '.join(unknown)}")
