"""Typed configuration of PEARL (Rakelly et al. 2019) with per-environment presets.

The presets are the authors' released "oyster" configs (REFERENCE §3): `configs/default.py`
overridden by `configs/<env>.json`. PEARL has one set of published hyperparameters (the paper's
runs used the released code), so both preset names the CLI knows, "paper" and "released", give
the same oyster values. Presets are data (`_OYSTER`), resolved by `resolve`; any field can then
be overridden. cheetah-vel-ood has no oyster config: it uses cheetah-vel's (ours, marked).

`total_steps` is set to what oyster's 500 iterations collect: `num_initial_steps` per training
task plus 500 x `num_tasks_sample` x (prior + posterior + extra steps).

Evaluation (see `mql.algos.pearl.agent`): oyster ran `num_steps_per_eval` steps on a test task and
scored the last trajectory; here `adapt_episodes` = num_steps_per_eval / horizon - 1 trajectories
are collected while adapting and the protocol then scores `eval_episodes` episodes with the
posterior inferred from all of them, which is the same "last trajectory" number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from mql.algos.config_base import (
    METAWORLD_EVAL_ONE_TASK_AT_A_TIME,
    PRESET_NAMES,
    BaseConfig,
    Preset,
    check_ranges,
)

EvalZ = Literal["mean", "sample"]


@dataclass
class PEARLConfig(BaseConfig):
    """PEARL: SAC with a probabilistic context encoder (product of Gaussian factors)."""

    algo: Literal["pearl"] = "pearl"
    """pearl; `--algo td3|td3-context|mql|...` shows MQL's flags (`mql --help` lists every
    algorithm)."""
    preset: Preset = "paper"
    """Hyperparameter preset; "paper" and "released" both give the oyster configs."""
    total_steps: int = 2_700_000
    """Environment steps of meta-training (preset: oyster's 500 iterations)."""
    eval_episodes: int = 2
    """Episodes per task scored after adaptation (and zero-shot) (preset: oyster's num_evals)."""

    ALGOS: ClassVar[tuple[str, ...]] = ("pearl",)
    LABEL: ClassVar[str] = "PEARL"

    # networks
    hidden: tuple[int, ...] = (300, 300, 300)
    """Hidden widths of Q1, Q2, V (and target V) and the policy (oyster: net_size x 3)."""
    encoder_hidden: tuple[int, ...] = (200, 200, 200)
    """Hidden widths of the context encoder MLP."""
    latent_dim: int = 5
    """Dimension of the task variable z."""
    use_next_obs_in_context: bool = False
    """Context transitions are (s, a, r, s') instead of (s, a, r) (oyster: walker/hopper)."""
    sparse_rewards: bool = False
    """The encoder sees info["sparse_reward"] instead of the reward (sparse-point-robot). SAC
    always learns from the environment's (dense) reward, as in oyster."""

    # SAC (oyster's PEARLSoftActorCritic)
    lr: float = 3e-4
    """Adam learning rate of policy, Q, V and encoder (oyster's four learning rates, all equal)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target V network (updated after every V step)."""
    reward_scale: float = 5.0
    """Rewards are multiplied by this in the Q target (entropy weight fixed at 1)."""
    kl_lambda: float = 0.1
    """Weight of KL(q(z|c) || N(0, I)), summed over the meta-batch tasks, in the encoder loss."""
    policy_mean_reg_weight: float = 1e-3
    """Weight of mean(mean^2) of the pre-tanh Gaussian in the policy loss."""
    policy_std_reg_weight: float = 1e-3
    """Weight of mean(log_std^2) in the policy loss."""
    policy_pre_activation_weight: float = 0.0
    """Weight of mean(sum(pre_tanh^2)) in the policy loss (oyster: 0)."""
    batch_size: int = 256
    """RL transitions per task per gradient step (from the task's RL buffer)."""
    embedding_batch_size: int = 100
    """Context transitions per task per gradient step (from the task's encoder buffer); also
    the context drawn to infer the posterior while collecting."""
    meta_batch: int = 16
    """Training tasks (drawn with replacement) per gradient step; Q/V/policy losses average
    over all their transitions."""

    # meta-training loop
    num_initial_steps: int = 2000
    """Warm-up steps per training task with z ~ prior (into both buffers)."""
    num_tasks_sample: int = 5
    """Training tasks collected on per iteration (drawn with replacement)."""
    num_steps_prior: int = 400
    """Per sampled task: steps with z ~ prior, resampled each trajectory (both buffers)."""
    num_steps_posterior: int = 0
    """Per sampled task: steps with z ~ posterior of the task's encoder buffer (both buffers)."""
    num_extra_rl_steps_posterior: int = 600
    """Per sampled task: further steps with z ~ posterior, into the RL buffer only."""
    update_post_train: int = 1
    """Trajectories between posterior updates while collecting with z ~ posterior."""
    num_train_steps_per_itr: int = 2000
    """Gradient steps per iteration."""
    replay_size: int = 1_000_000
    """Capacity of EACH per-task buffer (RL and encoder); storage grows on demand."""
    updates_per_call: int = 50
    """Gradient steps fused into one compiled call (lax.scan); numerics do not depend on it."""

    # evaluation
    num_exp_traj_eval: int = 2
    """While adapting: trajectories with z drawn from the prior (a fresh draw each) before z
    comes from the posterior of all context collected on the task."""
    adapt_episodes: int = 2
    """Trajectories collected on the new task while adapting (new-task data). Oyster's
    metric: num_steps_per_eval / horizon - 1 (preset). 1 gives MQL's new-task data budget
    (one episode); see `mql.algos.pearl`."""
    eval_z: EvalZ = "mean"
    """z of the adapted policy (and of post-exploration trajectories while adapting): the
    posterior mean (deterministic), or a posterior sample (oyster)."""

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range field."""
        super().validate()
        check_ranges(
            self,
            positive=(
                "latent_dim",
                "batch_size",
                "embedding_batch_size",
                "meta_batch",
                "num_initial_steps",
                "num_tasks_sample",
                "update_post_train",
                "replay_size",
                "updates_per_call",
                "adapt_episodes",
            ),
            nonneg=(
                "num_steps_prior",
                "num_steps_posterior",
                "num_extra_rl_steps_posterior",
                "num_train_steps_per_itr",
                "num_exp_traj_eval",
                "kl_lambda",
                "policy_mean_reg_weight",
                "policy_std_reg_weight",
                "policy_pre_activation_weight",
            ),
        )
        if self.num_steps_prior + self.num_steps_posterior <= 0:
            raise ValueError(
                "num_steps_prior + num_steps_posterior must be positive: the encoder buffer of "
                "a sampled task is cleared and must be refilled"
            )
        check_ranges(self, above_zero=("lr", "reward_scale"))
        if not 0 < self.gamma <= 1 or not 0 < self.tau <= 1:
            raise ValueError("gamma and tau must lie in (0, 1]")
        if self.eval_z not in ("mean", "sample"):
            raise ValueError(f"eval_z must be 'mean' or 'sample', got {self.eval_z!r}")
        if any(h <= 0 for h in (*self.hidden, *self.encoder_hidden)):
            raise ValueError("hidden and encoder_hidden widths must be positive")

    @property
    def adapts(self) -> bool:
        """PEARL always adapts (posterior inference from new-task context)."""
        return True

    @classmethod
    def preset_values(cls, env: str, preset: str) -> dict[str, Any]:
        return preset_values(env, preset)

    def warmup_steps(self, n_train: int, horizon: int) -> int:
        """Steps with z ~ prior before the first update, at least: `num_initial_steps` per
        training task, in whole episodes."""
        return n_train * math.ceil(self.num_initial_steps / horizon) * horizon


def _oyster(
    n_train: int,
    horizon: int,
    num_initial_steps: int,
    num_tasks_sample: int,
    prior: int,
    posterior: int,
    extra: int,
    num_steps_per_eval: int,
    **values: Any,
) -> dict[str, Any]:
    """One env's oyster values, with our derived fields (total_steps, adapt_episodes)."""
    per_iteration = num_tasks_sample * (prior + posterior + extra)
    return dict(
        num_initial_steps=num_initial_steps,
        num_tasks_sample=num_tasks_sample,
        num_steps_prior=prior,
        num_steps_posterior=posterior,
        num_extra_rl_steps_posterior=extra,
        total_steps=n_train * num_initial_steps + 500 * per_iteration,
        adapt_episodes=num_steps_per_eval // horizon - 1,
        **values,
    )


# oyster configs/default.py (values every env inherits unless its json overrides them)
_DEFAULT = dict(
    meta_batch=16,
    num_train_steps_per_itr=2000,
    batch_size=256,
    embedding_batch_size=64,
    gamma=0.99,
    tau=0.005,
    lr=3e-4,
    reward_scale=5.0,
    kl_lambda=0.1,
    use_next_obs_in_context=False,
    sparse_rewards=False,
    update_post_train=1,
    num_exp_traj_eval=1,
    eval_episodes=2,  # num_evals
    hidden=(300, 300, 300),
    encoder_hidden=(200, 200, 200),
    latent_dim=5,
    replay_size=1_000_000,
    eval_every=10_000,
)

# oyster configs/<env>.json: (n_train, horizon) from REFERENCE §1; num_evals -> eval_episodes.
_OYSTER: dict[str, dict[str, Any]] = {
    "cheetah-vel": _oyster(
        100, 200, 2000, 5, 400, 0, 600, 600,
        num_exp_traj_eval=2, embedding_batch_size=100, eval_episodes=1,
    ),
    "cheetah-dir": _oyster(
        2, 200, 2000, 5, 1000, 0, 1000, 600,
        meta_batch=4, num_exp_traj_eval=2, embedding_batch_size=256, eval_episodes=4,
    ),
    "ant-dir": _oyster(
        2, 200, 2000, 5, 400, 0, 600, 600,
        meta_batch=4, num_train_steps_per_itr=4000, num_exp_traj_eval=2,
        embedding_batch_size=256, eval_episodes=4,
    ),
    "ant-goal": _oyster(
        150, 200, 2000, 5, 400, 0, 600, 600,
        meta_batch=10, num_train_steps_per_itr=4000, num_exp_traj_eval=2,
        embedding_batch_size=256, eval_episodes=1, kl_lambda=1.0,
    ),
    "humanoid-dir": _oyster(
        100, 200, 2000, 5, 400, 0, 600, 600,
        num_train_steps_per_itr=4000, num_exp_traj_eval=2, embedding_batch_size=256,
        eval_episodes=1,
    ),
    "walker-params": _oyster(
        40, 200, 2000, 5, 400, 0, 600, 600,
        use_next_obs_in_context=True, meta_batch=10, num_train_steps_per_itr=4000,
        num_exp_traj_eval=2, embedding_batch_size=100, eval_episodes=2,
    ),
    "point-robot": _oyster(
        80, 20, 200, 5, 200, 0, 200, 60,
        num_train_steps_per_itr=1000, reward_scale=100.0, kl_lambda=0.1, eval_every=2000,
        eval_tasks=10,
    ),
    "sparse-point-robot": _oyster(
        80, 20, 200, 10, 100, 900, 0, 400,
        num_train_steps_per_itr=1000, embedding_batch_size=1024, gamma=0.9,
        reward_scale=100.0, sparse_rewards=True, kl_lambda=1.0, num_exp_traj_eval=5,
        eval_every=10_000, eval_tasks=10,
    ),
}  # fmt: skip
_OYSTER["hopper-params"] = dict(_OYSTER["walker-params"])
_OYSTER["cheetah-vel-ood"] = dict(_OYSTER["cheetah-vel"])  # ours: no oyster config


# Ours, every Meta-World family (oyster has no Meta-World config; 500-step episodes, rewards in
# [0, 10] per step, hence reward_scale 1): one warm-up episode per training task; per
# iteration 5 tasks x (2 episodes with z ~ prior + 2 from the posterior, RL only); adaptation on
# 2 new-task episodes; Meta-World's 3 scored episodes per goal; 5M steps.
_METAWORLD: dict[str, Any] = dict(
    num_initial_steps=500,
    num_tasks_sample=5,
    num_steps_prior=1000,
    num_steps_posterior=0,
    num_extra_rl_steps_posterior=1000,
    num_train_steps_per_itr=2000,
    latent_dim=7,
    embedding_batch_size=256,
    reward_scale=1.0,
    num_exp_traj_eval=1,
    adapt_episodes=2,
    eval_episodes=3,
    eval_every=50_000,
    eval_tasks=10,
    total_steps=5_000_000,
    **METAWORLD_EVAL_ONE_TASK_AT_A_TIME,
)


def preset_values(env: str, preset: str = "paper") -> dict[str, Any]:
    """Field values of `preset` for `env` (without the env/algo/preset fields themselves)."""
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESET_NAMES)}")
    if env.startswith("metaworld-"):
        return {**_DEFAULT, **_METAWORLD}
    return {**_DEFAULT, **_OYSTER.get(env, {})}  # a family of your own: oyster's defaults


__all__ = ["PEARLConfig", "preset_values"]
