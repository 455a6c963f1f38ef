"""Typed configuration of RL2 (Duan et al. 2016; Wang et al. 2016) trained with PPO.

Presets (REFERENCE §4): ProMP's RL2 runs (`full_code` branch) for every MuJoCo family: an LSTM of
64 units in ProMP (a GRU in garage; GRU is the default here, `--cell lstm` gives ProMP's), PPO
with learning rate 1e-3, 5 epochs, 1 minibatch, clip 0.2, no entropy bonus, the linear feature
baseline, GAE with lambda 1 and gamma 0.99, 2 episodes per trial, meta-batch 100, 501
iterations. The horizon is the family's (200; ProMP's half-cheetah direction runs used 100),
so the protocol scores RL2 on the same episodes as every other algorithm. ProMP's
`meta_batch_size` counts trials, so one iteration collects 100 x 2 x 200 = 40k steps and the
preset's `total_steps` is 500 iterations, 20M steps. "paper" and "released" give the same
values (the MQL paper ran ProMP's code). The point robots have no published RL2 settings:
their preset (meta-batch 40, horizon 20, 5M steps) is ours.

Tasks are drawn for every trial of an iteration with replacement from the training tasks (the
two-task families need it: 100 trials on 2 tasks); `task_sampling = "without_replacement"`
draws distinct tasks and then requires `meta_batch` <= the number of training tasks.
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

Baseline = Literal["linear", "value"]
BaselineFit = Literal["per_task", "batch"]


@dataclass
class RL2Config(OnPolicyConfig):
    """RL2: a recurrent policy whose hidden state carries over the episodes of a trial."""

    algo: Literal["rl2"] = "rl2"
    """rl2 (`mql --help` lists every algorithm)."""
    preset: Preset = "paper"
    """Hyperparameter preset; "paper" and "released" both give ProMP's RL2 settings."""
    total_steps: int = 20_000_000
    """Environment steps of meta-training (preset: 500 iterations of 40k steps)."""
    eval_every: int = 400_000
    """Evaluate every this many environment steps (10 iterations of the preset)."""

    ALGOS: ClassVar[tuple[str, ...]] = ("rl2",)
    LABEL: ClassVar[str] = "RL2"

    # policy
    cell: Literal["gru", "lstm"] = "gru"
    """Recurrent cell (ProMP: lstm; garage: gru)."""
    hidden: int = 64
    """Units of the recurrent cell."""
    sampler_policy: Literal["numpy", "jax"] = "numpy"
    """How the sampler computes each time step's actions: numpy (`mql.onpolicy.numpy_step`,
    about half the time of the compiled step a call at 100 slots) or jax (the jit-compiled
    module; runs saved before this option sampled so, and resume so). The same distribution;
    the numbers differ (noise stream, float rounding)."""

    # trials
    episodes_per_trial: int = 2
    """Episodes per trial; the hidden state is reset only at a trial's start."""
    meta_batch: int = 100
    """Trials per iteration, each on one training task."""

    # PPO
    lr: float = 1e-3
    """Adam learning rate."""
    ppo_epochs: int = 5
    """Passes over each iteration's batch."""
    minibatches: int = 1
    """Minibatches (of whole trials) per pass."""
    clip: float = 0.2
    """PPO's clipping range eps of the likelihood ratio."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient (garage: 0.02)."""
    max_grad_norm: float = 0.0
    """Clip gradients to this global norm (0: no clipping)."""
    normalize_advantages: bool = True
    """Normalise advantages over each batch (ProMP)."""
    bptt_len: int = 0
    """Truncate backpropagation through time every this many steps (0: whole trials)."""

    # advantages
    baseline: Baseline = "linear"
    """linear: the linear feature baseline fitted per task on each batch (ProMP, rllab);
    value: a learned value head on the recurrent state, trained with the PPO loss."""
    baseline_fit: BaselineFit = "per_task"
    """per_task: one linear fit per task of the batch (ProMP); batch: one fit over the whole
    batch, for families with many more tasks than trials per task (a per-task fit on one or
    two trials of 8+ features nearly reproduces their returns and leaves no advantage)."""
    vf_coef: float = 0.5
    """Weight of the value loss (baseline = value)."""

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range field."""
        super().validate()
        check_choices(
            self,
            {
                "cell": ("gru", "lstm"),
                "sampler_policy": ("numpy", "jax"),
                "baseline": ("linear", "value"),
                "baseline_fit": ("per_task", "batch"),
            },
        )
        check_ranges(
            self,
            positive=("hidden", "episodes_per_trial", "ppo_epochs", "minibatches"),
            nonneg=("bptt_len",),
            above_zero=("lr", "clip"),
        )
        if self.minibatches > self.meta_batch:
            raise ValueError(
                f"minibatches ({self.minibatches}) must be at most meta_batch ({self.meta_batch})"
            )
        for name in ("ent_coef", "max_grad_norm", "vf_coef"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def preset_values(cls, env: str, preset: str) -> dict[str, Any]:
        return preset_values(env, preset)

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Runs saved before `sampler_policy` existed sampled with the compiled step: they
        resume (and re-run from their config) exactly so."""
        data = super()._upgrade(data)
        data.setdefault("sampler_policy", "jax")
        return data


_OURS: dict[str, dict[str, Any]] = {
    "point-robot": dict(meta_batch=40, total_steps=5_000_000, eval_every=100_000),
    "sparse-point-robot": dict(meta_batch=40, total_steps=5_000_000, eval_every=100_000),
}


# Every Meta-World family: the Meta-World paper's RL2 settings (REFERENCE §5: GRU of 256 units,
# learning rate 5e-4, clip 0.2, GAE lambda 0.95, linear baseline; horizon 500, the family's);
# ours: 20 trials of 2 episodes per iteration (20k steps), one baseline fit over the batch
# (hundreds of tasks, one trial each), 20M steps.
_METAWORLD: dict[str, Any] = dict(
    cell="gru",
    hidden=256,
    lr=5e-4,
    clip=0.2,
    gae_lambda=0.95,
    baseline="linear",
    baseline_fit="batch",
    meta_batch=20,
    episodes_per_trial=2,
    eval_episodes=3,
    total_steps=20_000_000,
    eval_every=400_000,
    **METAWORLD_EVAL_ONE_TASK_AT_A_TIME,
)


def preset_values(env: str, preset: str = "paper") -> dict[str, Any]:
    """Field values of `preset` for `env`: ProMP's RL2 settings (the class defaults), the
    Meta-World paper's for Meta-World, the point robots' ours."""
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESET_NAMES)}")
    if env.startswith("metaworld-"):
        return dict(_METAWORLD)
    return dict(_OURS.get(env, {}))


__all__ = ["RL2Config", "preset_values"]
