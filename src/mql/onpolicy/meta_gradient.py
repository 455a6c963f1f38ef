"""Gradient-based meta-learning on the on-policy core: the inner adaptation step as a
differentiable function of the meta-parameters, and the outer objectives of MAML-TRPO and ProMP.

A task's batch (`PathBatch`) is its R episodes, time-major `(T, R, ...)`; a meta-batch stacks M
of them on a leading axis and the functions here are mapped over it by the caller (`task_map`).

Inner objectives J(theta; D) (maximised; means over the valid steps of D), with A the advantages
of D, pi_old the policy that sampled D and `sg` stop-gradient:

- `vpg` (REINFORCE; Finn et al. 2017, §3.2 and eq. 4 with its policy-gradient estimator):
  mean(log pi_theta(a|s) A);
- `lvc` (ProMP's low-variance curvature estimator; Rothfuss et al. 2019, §5 eq. 8):
  mean(pi_theta(a|s) / pi_old(a|s) A), the denominator being data (no gradient): its value is
  1 and its gradient that of `vpg` at theta = theta_old, its Hessian the LVC one;
- `dice` (Foerster et al. 2018, eq. 6 with the baseline term of its §4 / Farquhar et al. 2019):
  mean over steps of box(W_t) gamma^t r_t + (1 - box(w_t)) gamma^t b_t, with w_t = log pi(a_t|s_t),
  W_t its cumulative sum over the episode up to t, box(x) = exp(x - sg(x)) and b_t the baseline:
  its value is the discounted return, its gradient REINFORCE with the advantages
  gamma^t (R_t - b_t), and its higher derivatives include the terms from the sampling
  distribution.

The inner step (Finn et al. 2017, eq. 1): theta' = theta + alpha grad_theta J(theta; D), written
with `jax.grad`, so the outer objectives differentiate through it and their second-order terms
come from autodiff. `adapted_chain` runs K such steps (step k on the batch sampled by theta'_k).

Outer objectives on the batch D' sampled by the adapted policy (pi'_old):

- MAML-TRPO (Finn et al. 2017, §3.2; TRPO's surrogate, Schulman et al. 2015 eq. 14): loss
  -mean(pi_theta'(a|s) / pi'_old(a|s) A'); constraint: the mean KL(pi'_old || pi_theta') over D'.
- ProMP (Rothfuss et al. 2019, §6 eq. 11): loss -mean(min(r A', clip(r, 1 - eps, 1 + eps) A'))
  with r = pi_theta'(a|s) / pi'_old(a|s), plus eta_k * mean KL(pi_old,k || pi_theta'_k) over the
  batch D_k of every inner step k (theta'_0 = theta: the pre-update policy against itself at
  sampling).
- E-MAML's exploration term (Stadie et al. 2018, §4.1, the gradient of the post-update return
  through the pre-update sampling distribution): + c * R_hat * mean(log pi_theta(a|s) -
  log pi_old(a|s)) over the pre-update batch, R_hat the task's post-update mean return
  normalised over the meta-batch (our normalisation); its value is 0 and its gradient
  R_hat * grad mean log pi at theta = theta_old, so a line search on the loss is unaffected there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from mql.onpolicy.policies import gaussian_kl, log_prob

__all__ = [
    "ApplyFn",
    "Estimator",
    "Outputs",
    "PathBatch",
    "adapted_chain",
    "chain_with_outputs",
    "dice_objective",
    "estimator_objective",
    "exploration_from_outputs",
    "exploration_term",
    "inner_objective",
    "inner_step",
    "inner_step_with_outputs",
    "kl_from_outputs",
    "masked_mean",
    "mean_kl",
    "ppo_clip_surrogate",
    "ratio_surrogate",
    "task_map",
]

Estimator = Literal["vpg", "lvc", "dice"]
ESTIMATORS: tuple[str, ...] = ("vpg", "lvc", "dice")
ApplyFn = Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
"""params, obs (..., obs_dim) -> (mean, log_std), each (..., act_dim)."""
Outputs = tuple[jax.Array, jax.Array]
"""A policy's (mean, log_std) on a batch's states, each (..., act_dim)."""


class PathBatch(NamedTuple):
    """One task's episodes, `(T, R, ...)` (a meta-batch: `(M, T, R, ...)`)."""

    obs: jax.Array
    actions: jax.Array
    log_probs: jax.Array
    """log pi_old(a|s) of the sampling policy."""
    advantages: jax.Array
    rewards: jax.Array
    baselines: jax.Array
    """The baseline's value of each step (DiCE's b_t)."""
    valid: jax.Array
    """float 0/1."""


def task_map(fn: Callable[..., Any], *xs: Any) -> Any:
    """`fn` over the leading (task) axis of `xs`, one task after another (`jax.lax.map`), results
    stacked. Not `vmap`: with per-task weights, vmap makes batched matrix products, which XLA
    runs 3x slower on the CPU than the tasks' separate products (docs/performance.md)."""
    return jax.lax.map(lambda a: fn(*a), xs)


def masked_mean(x: jax.Array, valid: jax.Array) -> jax.Array:
    return (x * valid).sum() / jnp.maximum(valid.sum(), 1.0)


def _log_probs(apply_fn: ApplyFn, params: Any, batch: PathBatch) -> jax.Array:
    mean, log_std = apply_fn(params, batch.obs)
    return log_prob(mean, log_std, batch.actions)


def dice_objective(logp: jax.Array, batch: PathBatch, gamma: float) -> jax.Array:
    """DiCE with a baseline (see the module docstring) from the log-probabilities `logp`."""
    valid = batch.valid
    w = logp * valid
    cum = jnp.cumsum(w, axis=0)  # W_t over the episode (time is axis 0; one episode per column)
    box = lambda x: jnp.exp(x - jax.lax.stop_gradient(x))  # noqa: E731
    disc = gamma ** jnp.arange(valid.shape[0], dtype=logp.dtype)[:, None]
    terms = box(cum) * disc * batch.rewards + (1.0 - box(w)) * disc * batch.baselines
    return masked_mean(terms, valid)


def estimator_objective(
    logp: jax.Array, batch: PathBatch, estimator: Estimator, gamma: float
) -> jax.Array:
    """J(theta; D) of the module docstring from `logp`, log pi_theta(a|s) of the batch's actions."""
    if estimator == "vpg":
        return masked_mean(logp * batch.advantages, batch.valid)
    if estimator == "lvc":
        return masked_mean(jnp.exp(logp - batch.log_probs) * batch.advantages, batch.valid)
    if estimator == "dice":
        return dice_objective(logp, batch, gamma)
    raise ValueError(f"unknown inner estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")


def inner_objective(
    apply_fn: ApplyFn, params: Any, batch: PathBatch, estimator: Estimator, gamma: float
) -> jax.Array:
    """J(theta; D) of the module docstring (to be maximised)."""
    return estimator_objective(_log_probs(apply_fn, params, batch), batch, estimator, gamma)


def inner_step_with_outputs(
    apply_fn: ApplyFn,
    params: Any,
    batch: PathBatch,
    alpha: float,
    estimator: Estimator,
    gamma: float,
) -> tuple[Any, Outputs]:
    """theta + alpha grad J(theta; D) (Finn et al. 2017, eq. 1), and the policy's outputs at
    theta on the batch's states: the gradient is the policy's pullback of dJ/d outputs, so the
    forward pass that the step runs anyway gives the outputs, and an outer objective that also
    needs them (ProMP's KL against the sampling policy, E-MAML's term) differentiates through
    that one pass rather than a second one."""
    outputs, pullback = jax.vjp(lambda p: apply_fn(p, batch.obs), params)

    def objective(out: Outputs) -> jax.Array:
        return estimator_objective(log_prob(out[0], out[1], batch.actions), batch, estimator, gamma)

    (grads,) = pullback(jax.grad(objective)(outputs))
    return jax.tree_util.tree_map(lambda p, g: p + alpha * g, params, grads), outputs


def inner_step(
    apply_fn: ApplyFn,
    params: Any,
    batch: PathBatch,
    alpha: float,
    estimator: Estimator,
    gamma: float,
) -> Any:
    """theta + alpha grad J(theta; D): one differentiable inner step (Finn et al. 2017, eq. 1)."""
    return inner_step_with_outputs(apply_fn, params, batch, alpha, estimator, gamma)[0]


def chain_with_outputs(
    apply_fn: ApplyFn,
    params: Any,
    batches: tuple[PathBatch, ...],
    alpha: float,
    estimator: Estimator,
    gamma: float,
) -> tuple[list[Any], list[Outputs]]:
    """[theta'_0 = theta, .., theta'_K] (step k on `batches[k]`) and, for k < K, the outputs of
    theta'_k on the states of `batches[k]` (the batch it sampled), from the steps' own passes."""
    chain, outputs = [params], []
    for batch in batches:
        adapted, out = inner_step_with_outputs(apply_fn, chain[-1], batch, alpha, estimator, gamma)
        chain.append(adapted)
        outputs.append(out)
    return chain, outputs


def adapted_chain(
    apply_fn: ApplyFn,
    params: Any,
    batches: tuple[PathBatch, ...],
    alpha: float,
    estimator: Estimator,
    gamma: float,
) -> list[Any]:
    """[theta'_0 = theta, theta'_1, .., theta'_K]: step k on `batches[k]`."""
    return chain_with_outputs(apply_fn, params, batches, alpha, estimator, gamma)[0]


def ratio_surrogate(apply_fn: ApplyFn, params: Any, batch: PathBatch) -> jax.Array:
    """TRPO's surrogate mean(pi_theta / pi_old A) over the batch."""
    ratio = jnp.exp(_log_probs(apply_fn, params, batch) - batch.log_probs)
    return masked_mean(ratio * batch.advantages, batch.valid)


def ppo_clip_surrogate(apply_fn: ApplyFn, params: Any, batch: PathBatch, clip: float) -> jax.Array:
    """PPO's clipped surrogate mean(min(r A, clip(r, 1 - clip, 1 + clip) A)) over the batch."""
    ratio = jnp.exp(_log_probs(apply_fn, params, batch) - batch.log_probs)
    adv = batch.advantages
    surr = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * adv)
    return masked_mean(surr, batch.valid)


def kl_from_outputs(old: Outputs, out: Outputs, valid: jax.Array) -> jax.Array:
    """mean KL(pi_old(.|s) || pi_theta(.|s)) over the valid states, from both policies' outputs."""
    return masked_mean(gaussian_kl(old[0], old[1], out[0], out[1]), valid)


def mean_kl(
    apply_fn: ApplyFn,
    params: Any,
    old_mean: jax.Array,
    old_log_std: jax.Array,
    batch: PathBatch,
) -> jax.Array:
    """mean KL(pi_old(.|s) || pi_theta(.|s)) over the batch's valid states."""
    return kl_from_outputs((old_mean, old_log_std), apply_fn(params, batch.obs), batch.valid)


def exploration_from_outputs(out: Outputs, batch: PathBatch, post_score: jax.Array) -> jax.Array:
    """`exploration_term` from the policy's outputs on the batch's states."""
    logp = log_prob(out[0], out[1], batch.actions)
    return post_score * masked_mean(logp - batch.log_probs, batch.valid)


def exploration_term(
    apply_fn: ApplyFn, params: Any, batch: PathBatch, post_score: jax.Array
) -> jax.Array:
    """E-MAML's term (see the module docstring) for one task: `post_score` (the normalised
    post-update return, data) times the mean log-likelihood change on the pre-update batch."""
    return exploration_from_outputs(apply_fn(params, batch.obs), batch, post_score)
