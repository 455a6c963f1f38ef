"""What the on-policy algorithms' configs share (RL2, MAML-TRPO, ProMP): the Gaussian policy's
initial noise, how an iteration draws its tasks, the training horizon, the sampler's processes,
the advantages' discount and GAE lambda, bootstrapping at time limits and the scored policy.

`OnPolicyConfig` subclasses `BaseConfig`; `RL2Config` and `MetaGradientConfig` subclass it and
add their own `meta_batch` (trials for RL2, tasks for MAML-TRPO and ProMP) and algorithm fields.
Like every config module it imports no JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mql.algos.config_base import BaseConfig, check_choices, check_ranges

__all__ = ["OnPolicyConfig", "TaskSampling"]

TaskSampling = Literal["with_replacement", "without_replacement"]


@dataclass
class OnPolicyConfig(BaseConfig):
    """The fields and checks RL2, MAML-TRPO and ProMP share (see the module docstring)."""

    meta_batch: int = 40
    """Trials (RL2) or tasks (MAML-TRPO, ProMP) per iteration."""
    init_std: float = 1.0
    """Initial standard deviation of the Gaussian policy (ProMP: 1)."""
    task_sampling: TaskSampling = "with_replacement"
    """How each iteration draws its tasks from the training tasks."""
    horizon: int = 0
    """Training episode length (0: the family's, 200 for the MuJoCo families); evaluation
    always scores the family's own episodes."""
    sampler_processes: int = 0
    """Processes stepping the environments (0: one per CPU core, or one whose MuJoCo thread
    pool has a thread per core for the half-cheetah families on MuJoCo 4; the numbers are the
    same either way)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 1.0
    """GAE lambda (ProMP: 1; garage: 0.95)."""
    bootstrap_truncation: bool = True
    """Bootstrap from the baseline's estimate of the final observation where an episode (RL2: a
    trial) ends at the time limit (ProMP and garage treat that end as terminal: False)."""
    eval_deterministic: bool = False
    """Score the mean action instead of sampling from the policy (ProMP reports sampled
    rollouts, and RL2's exploration is its sampled policy's; a scored episode's noise is
    seeded from its first observation, so paired episodes share it)."""

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range field."""
        super().validate()
        check_choices(self, {"task_sampling": ("with_replacement", "without_replacement")})
        check_ranges(
            self,
            positive=("meta_batch",),
            nonneg=("horizon", "sampler_processes"),
            above_zero=("init_std",),
        )
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._check_family()

    def _check_family(self) -> None:
        """`horizon` within the family's episode length, and a `meta_batch` that sampling
        without replacement can fill from its training tasks."""
        import mql.envs

        family = mql.envs.family_class(self.env)
        if self.horizon > family.horizon:
            raise ValueError(
                f"horizon ({self.horizon}) must be at most {self.env}'s episode length "
                f"({family.horizon}); 0 uses it"
            )
        if self.task_sampling == "without_replacement" and self.meta_batch > family.n_train:
            raise ValueError(
                f"meta_batch ({self.meta_batch}) exceeds {self.env}'s {family.n_train} "
                "training tasks, which task_sampling=without_replacement requires; lower "
                "--meta-batch or use --task-sampling with_replacement"
            )

    @property
    def adapts(self) -> bool:
        return True

    def train_horizon(self, family_horizon: int) -> int:
        return self.horizon or family_horizon
