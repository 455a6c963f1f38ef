"""Typed configuration of MQL and its ablations, with per-environment presets.

Two presets per environment:
- "paper" (default): Table 1 of the paper's appendix, completed with the released values for
  what the table does not give (tasks sampled per iteration, warm-up steps, replay size, C,
  eq. 19 batch size, evaluation episodes); λ = 1 - ESS; β clipped at the table's constant;
  adaptation restarts Adam at the meta-training learning rate.
- "released": the authors' `run_script.py` values (REFERENCE §2) and rules: constant λ = 0.1,
  β ≤ exp(beta_clip) with β < 0.1 zeroed, a fresh Adam at 1e-3 for adaptation.
Presets are data (`_PAPER_TABLE1`, `_RELEASED`, `_OURS`), resolved by `MQLConfig.resolve`; any
field can then be overridden.
The point robots, hopper and the Meta-World families have no entry in either source; their
presets are ours (marked).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from mql.algos.config_base import (
    METAWORLD_EVAL_ONE_TASK_AT_A_TIME,
    PRESET_NAMES,
    BaseConfig,
    Preset,
    check_choices,
    check_ranges,
)
from mql.offpolicy.types import ContextMode, GruKernel

Algo = Literal["td3", "td3-context", "mql", "mql-no-eq19", "mql-fixed-lambda"]
ALGOS: tuple[str, ...] = ("td3", "td3-context", "mql", "mql-no-eq19", "mql-fixed-lambda")
ClipOn = Literal["beta", "logit"]
"""Where β is clipped: β itself (paper) or the classifier's logit (released code)."""
# The variants that adapt, and those that run eq. 19.
_ADAPTING = ("mql", "mql-no-eq19", "mql-fixed-lambda")
_EQ19 = ("mql", "mql-fixed-lambda")


@dataclass
class MQLConfig(BaseConfig):
    """Meta-Q-Learning, its TD3 / TD3-context ablations and its adaptation ablations."""

    algo: Algo = "mql"
    """td3 (no context), td3-context (no adaptation), mql, mql-no-eq19, mql-fixed-lambda;
    `--algo pearl` shows PEARL's flags instead (`mql --help` lists every algorithm)."""
    preset: Preset = "paper"
    """Hyperparameter preset: paper (Table 1) or released (authors' run_script.py)."""

    ALGOS: ClassVar[tuple[str, ...]] = ALGOS
    LABEL: ClassVar[str] = "MQL"

    # networks
    hidden: tuple[int, ...] = (300, 300)
    """Hidden widths of actor and critic MLPs."""
    history_len: int = 20
    """H: steps of (previous action, reward, observation) the GRU reads."""
    context_dim: int = 20
    """GRU hidden size (the context dimension)."""
    context_mode: ContextMode = "separate"
    """separate GRUs for actor and critic (released code), one shared GRU (paper), or none."""
    gru_kernel: GruKernel = "auto"
    """How the GRU runs: "xla" (compiled by XLA), "native" (C++ kernels via XLA's FFI,
    mql.kernels; CPU only, needs a C++ compiler) or "auto" (native where it builds, else xla).
    Same equations; results differ by float rounding (~1e-6)."""

    # TD3
    lr: float = 1e-3
    """Adam learning rate of actor and critic."""
    batch_size: int = 256
    """Transitions per meta-training update (and per eq. 18 update)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target networks (on actor steps)."""
    policy_noise: float = 0.3
    """Std of the target policy smoothing noise."""
    noise_clip: float = 0.5
    """Target policy smoothing noise is clipped to ±noise_clip."""
    policy_freq: int = 2
    """Actor and target updates every this many critic updates."""
    expl_noise: float = 0.3
    """Std of the Gaussian exploration noise while collecting."""

    # meta-training loop (eq. 15)
    num_initial_steps: int = 500
    """Warm-up steps of uniform random actions, per training task."""
    num_train_steps: int = 1000
    """Updates per iteration once the replay buffer holds `small_buffer` transitions."""
    small_buffer: int = 100_000
    """Below this many stored transitions, one update per collected step (released rule)."""
    num_tasks_sample: int = 1
    """Episodes (each on a random training task) collected per iteration."""
    replay_size: int = 1_000_000
    """Capacity of the meta-training replay buffer (transitions; a ring)."""
    updates_per_call: int = 50
    """Updates fused into one compiled call (lax.scan); numerics do not depend on it."""

    # adaptation (eq. 18, 19, 13)
    eq18_updates: int = 5
    """Updates on the new task's data (eq. 18)."""
    eq19_updates: int = 400
    """β-weighted updates on meta-training data (eq. 19)."""
    eq19_batch: int = 1280
    """Meta-training transitions per eq. 19 update."""
    beta_clip: float = 1.1
    """β clipping constant (Remark 4; Table 1), applied as `beta_clip_on` says."""
    beta_clip_on: ClipOn = "beta"
    """Clip β itself (paper) or the logit at -beta_clip, β ≤ exp(beta_clip) (released)."""
    beta_zero_below: float = 0.0
    """β below this becomes 0 (released: 0.1)."""
    lam_csc: float = 0.1
    """C, inverse L2 strength of the logistic propensity classifier (eq. 11)."""
    propensity_features: Literal["context", "context+obs"] = "context"
    """Classifier features: the actor's context z, optionally with the observation."""
    propensity_samples: int = 0
    propensity_negatives: Literal["replay", "recent"] = "replay"
    """Where the classifier's meta-training samples come from: uniformly from the whole replay
    buffer ("replay", ours: early in training it is mostly random warm-up data), or, as
    released, from each training task's `propensity_recent` most recent transitions, about
    equally many per task ("recent": n / tasks + 2 each)."""
    propensity_recent: int = 2000
    """Transitions per task kept as negatives by the "recent" rule (released: snapshot_size)."""
    """Meta-training transitions drawn as classifier negatives (0: as many as new-task ones)."""
    fixed_lambda: float | None = None
    """Constant λ instead of 1 - ESS (mql-fixed-lambda; the released runs used 0.1)."""
    adapt_lr: float | None = None
    """Learning rate of the fresh Adam used for adaptation (None: `lr`; released: 1e-3)."""

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range field."""
        super().validate()
        check_ranges(
            self,
            positive=(
                "history_len",
                "context_dim",
                "batch_size",
                "policy_freq",
                "num_train_steps",
                "num_tasks_sample",
                "replay_size",
                "updates_per_call",
                "eq19_batch",
                "propensity_recent",
            ),
            nonneg=(
                "num_initial_steps",
                "eq18_updates",
                "eq19_updates",
                "propensity_samples",
                "small_buffer",
                "beta_zero_below",
            ),
            above_zero=("lr", "lam_csc", "beta_clip", "tau", "gamma"),
        )
        if not 0 < self.gamma <= 1 or not 0 < self.tau <= 1:
            raise ValueError("gamma and tau must lie in (0, 1]")
        if self.adapt_lr is not None and self.adapt_lr <= 0:
            raise ValueError(f"adapt_lr must be > 0, got {self.adapt_lr}")
        if self.algo == "mql-fixed-lambda" and self.fixed_lambda is None:
            raise ValueError(
                "algo mql-fixed-lambda needs --fixed-lambda (the paper's Fig. 4c: 0.5)"
            )
        if self.fixed_lambda is not None and self.fixed_lambda < 0:
            raise ValueError(f"fixed_lambda must be >= 0, got {self.fixed_lambda}")
        check_choices(
            self,
            {
                "context_mode": ("separate", "shared", "none"),
                "gru_kernel": ("xla", "native", "auto"),
                "beta_clip_on": ("beta", "logit"),
                "propensity_features": ("context", "context+obs"),
                "propensity_negatives": ("replay", "recent"),
            },
        )
        if self.replay_size < self.batch_size:
            raise ValueError(
                f"replay_size ({self.replay_size}) must be at least batch_size ({self.batch_size})"
            )
        import mql.envs

        horizon = mql.envs.family_class(self.env).horizon
        if self.history_len > horizon:
            raise ValueError(
                f"history_len ({self.history_len}) exceeds the {self.env} episode length "
                f"({horizon}): the context would be mostly padding"
            )
        preset_lambda = preset_values(self.env, self.preset).get("fixed_lambda")
        if self.algo in ("mql", "mql-no-eq19") and self.fixed_lambda != preset_lambda:
            raise ValueError(
                f"fixed_lambda={self.fixed_lambda} with algo {self.algo}: λ would be fixed while "
                "the run is labelled λ = 1 - ESS; use --algo mql-fixed-lambda"
            )
        for name in ("expl_noise", "policy_noise", "noise_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {self.hidden}")

    def preflight(self) -> None:
        """Fail in one line when `gru_kernel="native"` cannot be built here (mql.kernels)."""
        from mql import kernels

        kernels.resolve(self.gru_kernel)

    def warmup_steps(self, n_train: int, horizon: int) -> int:
        """Random-action steps before the first update, at least: `num_initial_steps` per
        training task, in whole episodes."""
        return n_train * math.ceil(self.num_initial_steps / horizon) * horizon

    @property
    def adapts(self) -> bool:
        """Whether evaluation runs MQL's adaptation (eq. 18 and, unless ablated, eq. 19)."""
        return self.algo in _ADAPTING

    @property
    def uses_eq19(self) -> bool:
        return self.algo in _EQ19

    @property
    def effective_context_mode(self) -> ContextMode:
        return "none" if self.algo == "td3" else self.context_mode

    def as_variant(self, algo: str) -> Self:
        """This run's meta-training evaluated as another context variant (td3-context, mql,
        mql-no-eq19, mql-fixed-lambda: they train identically and differ in adaptation only);
        mql-fixed-lambda gets λ = 0.5 (Fig. 4c) unless the run fixed one, the others the
        preset's rule."""
        variants = ALGOS[1:]
        if self.algo not in variants or algo not in variants:
            raise ValueError(
                f"--adapt-as needs a run of {', '.join(variants)} and one of them as the "
                f"variant (got a {self.algo} run, variant {algo})"
            )
        fixed = preset_values(self.env, self.preset).get("fixed_lambda")
        if algo == "mql-fixed-lambda":
            fixed = 0.5 if self.fixed_lambda is None else self.fixed_lambda
        return dataclasses.replace(self, algo=algo, fixed_lambda=fixed)

    @classmethod
    def preset_values(cls, env: str, preset: str) -> dict[str, Any]:
        return preset_values(env, preset)  # type: ignore[arg-type]

    @classmethod
    def resolve(cls, env: str, algo: str, preset: str = "paper", **overrides: Any) -> Self:
        """As `BaseConfig.resolve`; mql-fixed-lambda gets λ = 0.5 (the paper's Fig. 4c) unless
        the preset or the overrides fix one."""
        if algo == "mql-fixed-lambda":
            merged = {**cls.preset_values(env, preset), **overrides}
            if merged.get("fixed_lambda") is None:
                overrides = {**overrides, "fixed_lambda": 0.5}
        return super().resolve(env, algo, preset, **overrides)

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data.setdefault("gru_kernel", "xla")  # saved before the field existed: those runs used XLA
        return super()._upgrade(data)


# Table 1 columns: Humanoid, HC-Vel, Ant-FB, Ant-Goal, Walker, HC-FB.
_PAPER_TABLE1: dict[str, dict[str, Any]] = {
    "humanoid-dir": dict(
        beta_clip=1.0,
        expl_noise=0.3,
        policy_noise=0.2,
        policy_freq=2,
        num_train_steps=500,
        eq18_updates=10,
        eq19_updates=200,
        history_len=20,
        context_dim=20,
        lr=3e-4,
    ),
    "cheetah-vel": dict(
        beta_clip=1.1,
        expl_noise=0.3,
        policy_noise=0.3,
        policy_freq=2,
        num_train_steps=1000,
        eq18_updates=5,
        eq19_updates=400,
        history_len=20,
        context_dim=20,
        lr=1e-3,
    ),
    "ant-dir": dict(
        beta_clip=1.0,
        expl_noise=0.3,
        policy_noise=0.3,
        policy_freq=2,
        num_train_steps=200,
        eq18_updates=10,
        eq19_updates=100,
        history_len=20,
        context_dim=15,
        lr=3e-4,
    ),
    "ant-goal": dict(
        beta_clip=1.2,
        expl_noise=0.2,
        policy_noise=0.4,
        policy_freq=4,
        num_train_steps=1000,
        eq18_updates=5,
        eq19_updates=400,
        history_len=25,
        context_dim=30,
        lr=4e-4,
    ),
    "walker-params": dict(
        beta_clip=2.0,
        expl_noise=0.3,
        policy_noise=0.3,
        policy_freq=4,
        num_train_steps=200,
        eq18_updates=10,
        eq19_updates=400,
        history_len=10,
        context_dim=30,
        lr=8e-4,
    ),
    "cheetah-dir": dict(
        beta_clip=0.8,
        expl_noise=0.2,
        policy_noise=0.2,
        policy_freq=3,
        num_train_steps=200,
        eq18_updates=10,
        eq19_updates=300,
        history_len=10,
        context_dim=30,
        lr=3e-4,
    ),
}

# REFERENCE §2 (run_script.py), columns ant-dir, humanoid-dir, cheetah-vel, cheetah-dir,
# ant-goal, walker.
_RELEASED: dict[str, dict[str, Any]] = {
    "ant-dir": dict(
        lr=3e-4,
        policy_freq=4,
        expl_noise=0.2,
        policy_noise=0.4,
        history_len=25,
        context_dim=30,
        num_train_steps=1000,
        num_tasks_sample=5,
        num_initial_steps=1500,
        replay_size=1_000_000,
        beta_clip=1.2,
        lam_csc=0.05,
        eq18_updates=5,
        eq19_updates=400,
        eq19_batch=1280,
        eval_episodes=4,
    ),
    "humanoid-dir": dict(
        lr=3e-4,
        policy_freq=3,
        expl_noise=0.2,
        policy_noise=0.3,
        history_len=15,
        context_dim=20,
        num_train_steps=500,
        num_tasks_sample=1,
        num_initial_steps=1000,
        replay_size=500_000,
        beta_clip=2.0,
        lam_csc=0.1,
        eq18_updates=5,
        eq19_updates=15,
        eq19_batch=1280,
        eval_episodes=2,
    ),
    "cheetah-vel": dict(
        lr=1e-3,
        policy_freq=2,
        expl_noise=0.3,
        policy_noise=0.3,
        history_len=20,
        context_dim=15,
        num_train_steps=200,
        num_tasks_sample=1,
        num_initial_steps=500,
        replay_size=1_000_000,
        beta_clip=1.0,
        lam_csc=0.1,
        eq18_updates=10,
        eq19_updates=100,
        eq19_batch=1280,
        eval_episodes=2,
    ),
    "cheetah-dir": dict(
        lr=3e-4,
        policy_freq=2,
        expl_noise=0.3,
        policy_noise=0.3,
        history_len=20,
        context_dim=20,
        num_train_steps=500,
        num_tasks_sample=1,
        num_initial_steps=1000,
        replay_size=1_000_000,
        beta_clip=1.5,
        lam_csc=0.5,
        eq18_updates=10,
        eq19_updates=50,
        eq19_batch=2560,
        eval_episodes=4,
    ),
    "ant-goal": dict(
        lr=4e-4,
        policy_freq=4,
        expl_noise=0.3,
        policy_noise=0.3,
        history_len=40,
        context_dim=40,
        num_train_steps=200,
        num_tasks_sample=5,
        num_initial_steps=1500,
        replay_size=1_000_000,
        beta_clip=2.0,
        lam_csc=0.1,
        eq18_updates=10,
        eq19_updates=150,
        eq19_batch=256,
        eval_episodes=2,
    ),
    "walker-params": dict(
        lr=8e-4,
        policy_freq=3,
        expl_noise=0.2,
        policy_noise=0.2,
        history_len=10,
        context_dim=30,
        num_train_steps=200,
        num_tasks_sample=5,
        num_initial_steps=2000,
        replay_size=1_000_000,
        beta_clip=1.1,
        lam_csc=0.06,
        eq18_updates=10,
        eq19_updates=400,
        eq19_batch=1280,
        eval_episodes=2,
    ),
}
_RELEASED_RULES: dict[str, Any] = dict(
    fixed_lambda=0.1,
    beta_clip_on="logit",
    beta_zero_below=0.1,
    adapt_lr=1e-3,
    propensity_negatives="recent",
)
# Released values the paper's table does not give, used by the "paper" preset too.
_PAPER_FROM_RELEASED = [
    "num_tasks_sample",
    "num_initial_steps",
    "replay_size",
    "lam_csc",
    "eq19_batch",
    "eval_episodes",
]

# Ours (no published values): hopper follows walker; the point robots have 20-step episodes.
_OURS: dict[str, dict[str, Any]] = {
    "hopper-params": dict(_RELEASED["walker-params"]),
    "point-robot": dict(
        lr=1e-3,
        policy_freq=2,
        expl_noise=0.3,
        policy_noise=0.2,
        history_len=10,
        context_dim=16,
        hidden=(64, 64),
        num_train_steps=100,
        num_tasks_sample=5,
        num_initial_steps=40,
        replay_size=200_000,
        beta_clip=1.5,
        lam_csc=0.1,
        eq18_updates=10,
        eq19_updates=100,
        eq19_batch=256,
        eval_episodes=2,
        eval_every=2000,
        small_buffer=0,
        eval_tasks=10,
    ),
}
_OURS["sparse-point-robot"] = dict(_OURS["point-robot"])
_OURS["cheetah-vel-ood"] = dict(_RELEASED["cheetah-vel"])

METAWORLD_PREFIX = "metaworld-"
# Ours, every Meta-World family (no published MQL values; episodes of 500 steps, rewards in
# [0, 10] per step): one warm-up episode per training task, 5 episodes and 1000 updates per
# iteration, the adaptation of the locomotion presets, Meta-World's 3 scored episodes per goal.
_METAWORLD: dict[str, Any] = dict(
    lr=3e-4,
    policy_freq=2,
    expl_noise=0.2,
    policy_noise=0.2,
    history_len=20,
    context_dim=30,
    num_train_steps=1000,
    num_tasks_sample=5,
    num_initial_steps=500,
    replay_size=1_000_000,
    beta_clip=1.2,
    lam_csc=0.1,
    eq18_updates=10,
    eq19_updates=200,
    eq19_batch=1280,
    eval_episodes=3,
    eval_every=50_000,
    eval_tasks=10,
    **METAWORLD_EVAL_ONE_TASK_AT_A_TIME,
)


def preset_values(env: str, preset: Preset) -> dict[str, Any]:
    """Field values of `preset` for `env` (without the env/algo/preset fields themselves)."""
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESET_NAMES)}")
    ours = _OURS.get(env, _METAWORLD if env.startswith(METAWORLD_PREFIX) else None)
    if ours is not None:
        values = dict(ours)
        base_env = "cheetah-vel" if env == "cheetah-vel-ood" else None
        if base_env is not None and preset == "paper":
            values.update(_paper_values(base_env))
        if preset == "released":
            values.update(_RELEASED_RULES)
        return values
    if env not in _RELEASED:
        return dict(_RELEASED_RULES) if preset == "released" else {}  # a family of your own
    if preset == "released":
        return {**_RELEASED[env], **_RELEASED_RULES}
    return _paper_values(env)


def _paper_values(env: str) -> dict[str, Any]:
    values = {k: _RELEASED[env][k] for k in _PAPER_FROM_RELEASED}
    values.update(_PAPER_TABLE1[env])
    return values


__all__ = ["ALGOS", "PRESET_NAMES", "ClipOn", "MQLConfig", "preset_values"]
