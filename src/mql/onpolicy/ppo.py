"""Proximal policy optimisation (Schulman et al. 2017) on the sampler's `(T, N)` batches.

Loss, averaged over the valid steps of a minibatch (eq. 7 of the PPO paper, with the entropy
bonus and value loss of its eq. 9):

    L = -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)) - c_ent mean(H) + c_v mean((V - R)^2) / 2

with `rho = exp(log pi(a|x) - log pi_old(a|x))`. The value term is used only when the policy
has a value head (otherwise the advantages come from the linear baseline). Advantages are
normalised to zero mean and unit standard deviation over the valid steps of the whole batch
(ProMP's `normalize_adv`), if asked. An update is `epochs` passes over `minibatches` random
splits of the slot axis (whole trials stay together, so a recurrent policy sees whole
sequences; when N is not divisible, each pass leaves out N mod minibatches random slots).
Gradients are clipped by global norm if `max_grad_norm` > 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mql.onpolicy.policies import entropy, log_prob
from mql.onpolicy.types import PolicyInputs

__all__ = [
    "OutputsFn",
    "PPOBatch",
    "PPOSettings",
    "PPOState",
    "make_optimizer",
    "make_update",
    "normalize",
    "ppo_loss",
]

OutputsFn = Callable[[Any, PolicyInputs], tuple[jax.Array, jax.Array, jax.Array]]
"""params, inputs (T, N, ...) -> (mean, log_std, value) over the batch."""


class PPOSettings(NamedTuple):
    clip: float = 0.2
    epochs: int = 5
    minibatches: int = 1
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    use_value: bool = False
    normalize_advantages: bool = True


class PPOBatch(NamedTuple):
    inputs: PolicyInputs
    actions: jax.Array  # (T, N, act_dim)
    old_log_probs: jax.Array  # (T, N)
    advantages: jax.Array  # (T, N)
    value_targets: jax.Array  # (T, N)
    valid: jax.Array  # (T, N) float 0/1


class PPOState(NamedTuple):
    params: Any
    opt_state: Any
    key: jax.Array


def make_optimizer(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    """Adam, after clipping by global norm when `max_grad_norm` > 0."""
    adam = optax.adam(lr)
    return (
        optax.chain(optax.clip_by_global_norm(max_grad_norm), adam) if max_grad_norm > 0 else adam
    )


def normalize(x: jax.Array, valid: jax.Array) -> jax.Array:
    """(x - mean) / (std + 1e-8) over the valid entries; 0 elsewhere."""
    n = jnp.maximum(valid.sum(), 1.0)
    mean = (x * valid).sum() / n
    std = jnp.sqrt((((x - mean) * valid) ** 2).sum() / n)
    return (x - mean) / (std + 1e-8) * valid


def ppo_loss(
    params: Any, outputs_fn: OutputsFn, batch: PPOBatch, s: PPOSettings
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss of the module docstring and its parts, on `batch` as given."""
    mean, log_std, value = outputs_fn(params, batch.inputs)
    logp = log_prob(mean, log_std, batch.actions)
    ratio = jnp.exp(logp - batch.old_log_probs)
    adv = batch.advantages
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - s.clip, 1.0 + s.clip) * adv)
    w = batch.valid / jnp.maximum(batch.valid.sum(), 1.0)
    policy_loss = -(w * surrogate).sum()
    ent = (w * entropy(log_std)).sum()
    value_loss = 0.5 * (w * (value - batch.value_targets) ** 2).sum()
    loss = policy_loss - s.ent_coef * ent
    if s.use_value:
        loss = loss + s.vf_coef * value_loss
    metrics = {
        "losses/policy_loss": policy_loss,
        "losses/entropy": ent,
        "losses/value_loss": value_loss,
        "losses/approx_kl": (w * (batch.old_log_probs - logp)).sum(),
        "losses/clip_fraction": (w * (jnp.abs(ratio - 1.0) > s.clip)).sum(),
    }
    return loss, metrics


def make_update(
    outputs_fn: OutputsFn, optimizer: optax.GradientTransformation, s: PPOSettings
) -> Callable[[PPOState, PPOBatch], tuple[PPOState, dict[str, jax.Array]]]:
    """A jit-compiled PPO update: (state, batch) -> (state, metrics of the last minibatch)."""
    grad_fn = jax.value_and_grad(lambda p, b: ppo_loss(p, outputs_fn, b, s), has_aux=True)

    def update(state: PPOState, batch: PPOBatch) -> tuple[PPOState, dict[str, jax.Array]]:
        if s.normalize_advantages:
            batch = batch._replace(advantages=normalize(batch.advantages, batch.valid))
        n = batch.valid.shape[1]
        size = n // s.minibatches

        def minibatch(carry: tuple[Any, Any], idx: jax.Array) -> tuple[tuple[Any, Any], Any]:
            params, opt_state = carry
            sub = jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=1), batch)
            (_, metrics), grads = grad_fn(params, sub)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics

        def epoch(carry: tuple[Any, Any], key: jax.Array) -> tuple[tuple[Any, Any], Any]:
            perm = jax.random.permutation(key, n)[: size * s.minibatches]
            return jax.lax.scan(minibatch, carry, perm.reshape(s.minibatches, size))

        key, sub = jax.random.split(state.key)
        (params, opt_state), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(sub, s.epochs)
        )
        last = jax.tree_util.tree_map(lambda m: m[-1, -1], metrics)
        return PPOState(params, opt_state, key), last

    return jax.jit(update)
