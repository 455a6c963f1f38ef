"""Typed configuration of MAML-TRPO (Finn et al. 2017) and ProMP (Rothfuss et al. 2019).

Presets (REFERENCE §4, ProMP's `full_code` runs, which the MQL paper's Fig. 3 used): Gaussian MLP
(64, 64) tanh with a learned state-independent log-std (initial std 1), meta-batch 40 tasks, 20
rollouts per task, gamma 0.99, GAE lambda 1, the linear feature baseline fitted per task,
advantages normalised per task, 1001 iterations; the horizon 100 for cheetah-dir and the
family's (200) elsewhere; inner step size 0.1 (0.05 for walker-params and hopper-params, the
randomised-parameter families); one inner step (MAML-TRPO on ant-goal: 2).
MAML-TRPO: VPG inner step, TRPO outer step with KL bound 0.01, 10 CG iterations, damping 1e-5,
backtracking 0.8^k for up to 15 steps. ProMP: LVC inner step, clipped outer surrogate (0.3) +
eta KL with eta = 5e-4 fixed, 5 Adam steps (learning rate 1e-3) per batch.
`total_steps` is 1001 iterations, each sampling (inner_steps + 1) x meta_batch x rollouts x
horizon steps (cheetah-dir: 1001 x 2 x 40 x 20 x 100 = 160M). "paper" and "released" give the
same values (the MQL paper ran ProMP's code). Ours, marked in `_OURS`: the point robots (no
published settings): meta-batch 20, 10 rollouts per task, the family's horizon (20), 500
iterations; `eval_every` (every 10 iterations) everywhere. Meta-World (REFERENCE §5, the
Meta-World paper's MAML settings, used for ProMP too): meta-batch 20 (45 for ML45), 10 rollouts
per task, (128, 128) tanh, horizon 500; ours there: 1001 iterations, the inner step size 0.1, 3
scored episodes a goal and evaluation one task at a time.

Tasks of an iteration are drawn with replacement from the training tasks (cheetah-dir has 2 and
ProMP's meta-batch is 40); `task_sampling = "without_replacement"` draws distinct ones.
Config modules import no JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from mql.algos.config_base import (
    METAWORLD_EVAL_ONE_TASK_AT_A_TIME,
    PRESET_NAMES,
    Preset,
    check_choices,
    check_ranges,
)
from mql.algos.onpolicy_config import OnPolicyConfig

InnerEstimator = Literal["vpg", "lvc", "dice"]
ITERATIONS = 1001
"""ProMP's `full_code` runs: 1001 iterations."""


@dataclass
class MetaGradientConfig(OnPolicyConfig):
    """What MAML-TRPO and ProMP share: the policy, the sampling, the inner step, the protocol."""

    total_steps: int = 320_320_000
    """Environment steps of meta-training (preset: 1001 iterations)."""
    eval_every: int = 3_200_000
    """Evaluate every this many environment steps (preset: every 10 iterations)."""

    # policy
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layers of the Gaussian MLP policy (tanh)."""

    # sampling
    rollouts_per_task: int = 20
    """Episodes per task for each inner step and for the outer step."""

    # inner step
    inner_lr: float = 0.1
    """Inner step size alpha."""
    inner_steps: int = 1
    """Inner steps, each on fresh rollouts of the policy adapted so far."""
    inner_estimator: InnerEstimator = "vpg"
    """Inner objective: vpg (REINFORCE), lvc (ProMP's likelihood ratio) or dice."""
    exploration_coef: float = 0.0
    """Weight of E-MAML's exploration term in the outer objective (0: off; E-MAML: 1)."""

    # advantages
    normalize_advantages: bool = True
    """Normalise advantages per task (ProMP)."""

    # evaluation
    eval_adapt_rollouts: int = 0
    """New-task episodes per inner step of an evaluation's adaptation (0: rollouts_per_task,
    ProMP's budget of 20 x horizon steps; 1: MQL's budget of one episode)."""

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range field."""
        super().validate()
        check_choices(self, {"inner_estimator": ("vpg", "lvc", "dice")})
        check_ranges(
            self,
            positive=("rollouts_per_task", "inner_steps"),
            nonneg=("eval_adapt_rollouts",),
            above_zero=("inner_lr",),
        )
        if not self.hidden or any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden must list positive layer widths, got {self.hidden}")
        if not self.exploration_coef >= 0.0:
            raise ValueError(f"exploration_coef must be >= 0, got {self.exploration_coef}")
        slots = self.meta_batch * self.rollouts_per_task
        if self.sampler_processes > slots:
            raise ValueError(
                f"sampler_processes ({self.sampler_processes}) exceeds the {slots} rollouts of "
                f"an iteration (meta_batch x rollouts_per_task): a process would have none"
            )

    def adapt_rollouts(self) -> int:
        """New-task episodes per inner step of the protocol's adaptation."""
        return self.eval_adapt_rollouts or self.rollouts_per_task

    @classmethod
    def preset_values(cls, env: str, preset: str) -> dict[str, Any]:
        return preset_values(env, preset, cls.ALGOS[0])


@dataclass
class MAMLTRPOConfig(MetaGradientConfig):
    """MAML-TRPO: VPG inner steps, a TRPO outer step through the adaptation."""

    algo: Literal["maml-trpo"] = "maml-trpo"
    """maml-trpo (`mql --help` lists every algorithm)."""
    preset: Preset = "paper"
    """Hyperparameter preset; "paper" and "released" both give ProMP's MAML-TRPO settings."""

    ALGOS: ClassVar[tuple[str, ...]] = ("maml-trpo",)
    LABEL: ClassVar[str] = "MAML-TRPO"

    max_kl: float = 0.01
    """TRPO's bound delta on the mean KL of the adapted policies."""
    cg_iters: int = 10
    """Conjugate-gradient iterations."""
    cg_damping: float = 1e-5
    """Damping added to the KL's Hessian in conjugate gradient."""
    backtrack_ratio: float = 0.8
    """Line-search step shrink factor."""
    max_backtracks: int = 15
    """Line-search steps tried."""
    hvp: Literal["gauss_newton", "full"] = "gauss_newton"
    """How the KL's Hessian-vector products through the inner step are taken, both exact at
    the sampling parameters: gauss_newton (J^T H J, second derivatives) or full (forward over
    reverse, third derivatives)."""
    hvp_tasks: int = 0
    """Tasks of the meta-batch whose mean KL gives conjugate gradient's products (0: all, as
    ProMP; fewer: a cheaper estimate, as baselines' TRPO takes its products on a subsample;
    the line search still checks the whole batch's KL)."""

    def validate(self) -> None:
        super().validate()
        check_ranges(
            self,
            positive=("cg_iters", "max_backtracks"),
            nonneg=("hvp_tasks",),
            above_zero=("max_kl",),
        )
        check_choices(self, {"hvp": ("gauss_newton", "full")})
        if self.hvp_tasks > self.meta_batch:
            raise ValueError(
                f"hvp_tasks ({self.hvp_tasks}) must be at most meta_batch ({self.meta_batch})"
            )
        if not self.cg_damping >= 0.0:
            raise ValueError(f"cg_damping must be >= 0, got {self.cg_damping}")
        if not 0.0 < self.backtrack_ratio < 1.0:
            raise ValueError(f"backtrack_ratio must be in (0, 1), got {self.backtrack_ratio}")


@dataclass
class ProMPConfig(MetaGradientConfig):
    """ProMP: LVC inner steps, a clipped outer surrogate with a KL penalty, Adam."""

    algo: Literal["promp"] = "promp"
    """promp (`mql --help` lists every algorithm)."""
    preset: Preset = "paper"
    """Hyperparameter preset; "paper" and "released" both give ProMP's settings."""
    inner_estimator: InnerEstimator = "lvc"
    """Inner objective: lvc (ProMP), vpg or dice."""

    ALGOS: ClassVar[tuple[str, ...]] = ("promp",)
    LABEL: ClassVar[str] = "ProMP"

    clip: float = 0.3
    """Clipping range eps of the outer likelihood ratio."""
    kl_coef: float = 5e-4
    """eta: weight of the KL of each inner step's policy against its sampling policy."""
    adaptive_kl: bool = False
    """Halve or double eta per inner step when its KL leaves [target / 1.5, target x 1.5]."""
    target_inner_kl: float = 0.01
    """The KL target of `adaptive_kl`."""
    outer_steps: int = 5
    """Adam steps on each batch (no re-sampling)."""
    lr: float = 1e-3
    """Adam learning rate."""

    def validate(self) -> None:
        super().validate()
        check_ranges(self, positive=("outer_steps",), above_zero=("clip", "lr", "target_inner_kl"))
        if not self.kl_coef >= 0.0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")


def iteration_steps(meta_batch: int, rollouts: int, horizon: int, inner_steps: int) -> int:
    """Environment steps of one iteration (each inner step's batch and the outer one)."""
    return (inner_steps + 1) * meta_batch * rollouts * horizon


_RANDOMISED_PARAMS = ("walker-params", "hopper-params")
_OURS: dict[str, dict[str, Any]] = {
    "point-robot": dict(meta_batch=20, rollouts_per_task=10, iterations=500),
    "sparse-point-robot": dict(meta_batch=20, rollouts_per_task=10, iterations=500),
}


def preset_values(env: str, preset: str = "paper", algo: str = "maml-trpo") -> dict[str, Any]:
    """Field values of `preset` for `env` (see the module docstring)."""
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESET_NAMES)}")
    import mql.envs

    values: dict[str, Any] = {}
    if env == "cheetah-dir":
        values["horizon"] = 100
    if env in _RANDOMISED_PARAMS:
        values["inner_lr"] = 0.05
    if env == "ant-goal" and algo == "maml-trpo":
        values["inner_steps"] = 2
    if env.startswith("metaworld-"):
        # the Meta-World paper's MAML settings (REFERENCE §5: meta-batch 20, 45 for ML45, 10
        # rollouts per task, (128, 128) tanh; ProMP takes them too, ours), its protocol's 3
        # scored episodes per goal, and one task at a time in evaluation
        # (METAWORLD_EVAL_ONE_TASK_AT_A_TIME says why)
        values.update(
            meta_batch=45 if env == "metaworld-ml45" else 20,
            rollouts_per_task=10,
            hidden=(128, 128),
            eval_episodes=3,
            **METAWORLD_EVAL_ONE_TASK_AT_A_TIME,
        )
    ours = dict(_OURS.get(env, {}))
    iterations = ours.pop("iterations", ITERATIONS)
    values.update(ours)
    horizon = values.get("horizon") or mql.envs.family_class(env).horizon
    per_iteration = iteration_steps(
        values.get("meta_batch", 40),
        values.get("rollouts_per_task", 20),
        horizon,
        values.get("inner_steps", 1),
    )
    values["total_steps"] = iterations * per_iteration
    values["eval_every"] = 10 * per_iteration
    return values


__all__ = [
    "ITERATIONS",
    "MAMLTRPOConfig",
    "MetaGradientConfig",
    "ProMPConfig",
    "iteration_steps",
    "preset_values",
]
