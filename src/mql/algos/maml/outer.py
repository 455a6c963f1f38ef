"""The outer (meta) updates of MAML-TRPO and ProMP, as pure jit-compiled functions of the state
and one iteration's batches (the objectives are in `mql.onpolicy.meta_gradient`).

Inputs: `pre`, a tuple of the K inner steps' meta-batches (`PathBatch`, each `(M, T, R, ...)`;
`pre[k]` sampled by the policy after k inner steps); `post`, the meta-batch sampled by the
adapted policies; `post_score` (M,), each task's post-update mean return normalised over the
meta-batch (E-MAML's weight). The adapted parameters are recomputed inside from the
meta-parameters (`adapted_chain`, mapped over the tasks), so every gradient and
Hessian-vector product goes through the inner steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from mql.onpolicy.meta_gradient import (
    ApplyFn,
    Estimator,
    PathBatch,
    adapted_chain,
    exploration_term,
    mean_kl,
    ppo_clip_surrogate,
    ratio_surrogate,
    task_map,
)
from mql.onpolicy.policies import gaussian_kl
from mql.onpolicy.trpo import TRPOSettings, gauss_newton_operator, hvp_operator, trpo_step

__all__ = [
    "InnerSettings",
    "MetaState",
    "OuterFn",
    "ProMPSettings",
    "make_promp_update",
    "make_trpo_update",
]


class MetaState(NamedTuple):
    params: Any
    opt_state: Any
    """Adam's state (ProMP); an empty state for MAML-TRPO."""
    key: jax.Array
    kl_coef: jax.Array
    """(K,) ProMP's eta of each inner step (adapted if asked); unused by MAML-TRPO."""


class InnerSettings(NamedTuple):
    alpha: float
    estimator: Estimator
    gamma: float
    exploration_coef: float


OuterFn = Callable[
    [MetaState, tuple[PathBatch, ...], PathBatch, jax.Array], tuple[MetaState, dict[str, Any]]
]


def _chains(apply_fn: ApplyFn, params: Any, pre: tuple[PathBatch, ...], s: InnerSettings) -> Any:
    """Per task: [theta, theta'_1, .., theta'_K], each leaf stacked over the M tasks."""
    return task_map(
        lambda b: adapted_chain(apply_fn, params, b, s.alpha, s.estimator, s.gamma), pre
    )


def _per_task_mean(fn: Callable[..., jax.Array], *args: Any) -> jax.Array:
    return jnp.mean(task_map(fn, *args))


def _distribution(apply_fn: ApplyFn, params: Any, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, log_std = task_map(apply_fn, params, obs)
    return jax.lax.stop_gradient(mean), jax.lax.stop_gradient(log_std)


def _exploration(
    apply_fn: ApplyFn, chain: list[Any], pre: tuple[PathBatch, ...], score: jax.Array
) -> jax.Array:
    """E-MAML's term summed over the inner steps' sampling policies, mean over tasks."""
    term = lambda p, b, sc: exploration_term(apply_fn, p, b, sc)  # noqa: E731
    return sum(_per_task_mean(term, chain[k], b, score) for k, b in enumerate(pre))


def make_trpo_update(
    apply_fn: ApplyFn,
    inner: InnerSettings,
    s: TRPOSettings,
    hvp: str = "gauss_newton",
    hvp_tasks: int = 0,
) -> OuterFn:
    """MAML-TRPO's outer step: TRPO on the meta-parameters (`mql.onpolicy.trpo.trpo_step`) with
    the surrogate and the mean KL of the adapted policies (plus E-MAML's term if asked).

    The Hessian-vector products of the mean KL through the inner steps, at the sampling
    parameters: `gauss_newton` (J^T H_KL J with J the Jacobian of the adapted policies'
    outputs, `gauss_newton_operator`: exact there, since the KL's gradient is zero) or `full`
    (forward over reverse of the KL's gradient, `hvp_operator`: the same numbers, third
    derivatives of the policy through the inner step, about 1.5x slower); on the first
    `hvp_tasks` tasks of the meta-batch (0: all)."""

    def update(
        state: MetaState, pre: tuple[PathBatch, ...], post: PathBatch, post_score: jax.Array
    ) -> tuple[MetaState, dict[str, Any]]:
        flat0, unravel = ravel_pytree(state.params)
        old_mean, old_log_std = _distribution(
            apply_fn, _chains(apply_fn, state.params, pre, inner)[-1], post.obs
        )

        def loss_fn(flat: jax.Array) -> jax.Array:
            chain = _chains(apply_fn, unravel(flat), pre, inner)
            surr = _per_task_mean(lambda p, b: ratio_surrogate(apply_fn, p, b), chain[-1], post)
            loss = -surr
            if inner.exploration_coef > 0:
                loss = loss - inner.exploration_coef * _exploration(
                    apply_fn, chain, pre, post_score
                )
            return loss

        def kl_fn(flat: jax.Array) -> jax.Array:
            adapted = _chains(apply_fn, unravel(flat), pre, inner)[-1]
            kl = lambda p, m, ls, b: mean_kl(apply_fn, p, m, ls, b)  # noqa: E731
            return _per_task_mean(kl, adapted, old_mean, old_log_std, post)

        # the products of CG: on the first `hvp_tasks` tasks (all if 0; the tasks are drawn at
        # random, so their mean KL's Hessian estimates the whole batch's)
        n = hvp_tasks or post.valid.shape[0]
        head = lambda tree: jax.tree_util.tree_map(lambda x: x[:n], tree)  # noqa: E731
        pre_n, post_n, old_n = head(pre), head(post), head((old_mean, old_log_std))
        if hvp == "full":
            matvec = hvp_operator(
                lambda flat: _per_task_mean(
                    lambda p, m, ls, b: mean_kl(apply_fn, p, m, ls, b),
                    _chains(apply_fn, unravel(flat), pre_n, inner)[-1],
                    *old_n,
                    post_n,
                ),
                flat0,
                s.cg_damping,
            )
        else:

            def outputs(flat: jax.Array) -> tuple[jax.Array, jax.Array]:
                adapted = _chains(apply_fn, unravel(flat), pre_n, inner)[-1]
                return task_map(apply_fn, adapted, post_n.obs)

            def divergence(out: tuple[jax.Array, jax.Array]) -> jax.Array:
                kl = gaussian_kl(old_n[0], old_n[1], out[0], out[1])
                valid = post_n.valid
                return jnp.mean((kl * valid).sum(axis=(1, 2)) / valid.sum(axis=(1, 2)))

            matvec = gauss_newton_operator(outputs, divergence, flat0, s.cg_damping)
        flat, metrics = trpo_step(loss_fn, kl_fn, flat0, s, matvec)
        return state._replace(params=unravel(flat)), metrics

    return jax.jit(update)


class ProMPSettings(NamedTuple):
    clip: float
    outer_steps: int
    adaptive_kl: bool
    target_inner_kl: float


def make_promp_update(
    apply_fn: ApplyFn,
    inner: InnerSettings,
    optimizer: optax.GradientTransformation,
    s: ProMPSettings,
) -> OuterFn:
    """ProMP's outer update: `outer_steps` Adam steps on the clipped surrogate of the adapted
    policies plus eta_k times the KL of each inner step's policy against its sampling policy
    (Rothfuss et al. 2019, eq. 11 and Algorithm 1), then, if asked, eta_k halved or doubled."""

    def update(
        state: MetaState, pre: tuple[PathBatch, ...], post: PathBatch, post_score: jax.Array
    ) -> tuple[MetaState, dict[str, Any]]:
        chain_old = _chains(apply_fn, state.params, pre, inner)
        olds = [_distribution(apply_fn, chain_old[k], b.obs) for k, b in enumerate(pre)]
        kl = lambda p, m, ls, b: mean_kl(apply_fn, p, m, ls, b)  # noqa: E731

        def inner_kls(chain: list[Any]) -> jax.Array:
            return jnp.stack([_per_task_mean(kl, chain[k], *olds[k], b) for k, b in enumerate(pre)])

        def loss_fn(params: Any, kl_coef: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
            chain = _chains(apply_fn, params, pre, inner)
            surr = _per_task_mean(
                lambda p, b: ppo_clip_surrogate(apply_fn, p, b, s.clip), chain[-1], post
            )
            kls = inner_kls(chain)
            loss = -surr + jnp.sum(kl_coef * kls)
            if inner.exploration_coef > 0:
                loss = loss - inner.exploration_coef * _exploration(
                    apply_fn, chain, pre, post_score
                )
            return loss, {"losses/surrogate": surr, "losses/inner_kl": jnp.mean(kls)}

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def step(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], Any]:
            params, opt_state = carry
            (loss, aux), grads = grad_fn(params, state.kl_coef)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), {
                "losses/outer_loss": loss,
                **aux,
            }

        (params, opt_state), trace = jax.lax.scan(
            step, (state.params, state.opt_state), None, length=s.outer_steps
        )
        kl_coef = state.kl_coef
        if s.adaptive_kl:
            kls = inner_kls(_chains(apply_fn, params, pre, inner))
            kl_coef = jnp.where(kls < s.target_inner_kl / 1.5, kl_coef / 2.0, kl_coef)
            kl_coef = jnp.where(kls > s.target_inner_kl * 1.5, kl_coef * 2.0, kl_coef)
        metrics = {k: v[-1] for k, v in trace.items()}
        metrics["losses/outer_loss_before"] = trace["losses/outer_loss"][0]
        metrics["losses/kl_coef"] = jnp.mean(kl_coef)
        return MetaState(params, opt_state, state.key, kl_coef), metrics

    return jax.jit(update)
