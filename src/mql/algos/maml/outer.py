"""The outer (meta) updates of MAML-TRPO and ProMP, as pure jit-compiled functions of the state
and one iteration's batches (the objectives are in `mql.onpolicy.meta_gradient`).

Inputs: `pre`, a tuple of the K inner steps' meta-batches (`PathBatch`, each `(M, T, R, ...)`;
`pre[k]` sampled by the policy after k inner steps); `post`, the meta-batch sampled by the
adapted policies; `post_score` (M,), each task's post-update mean return normalised over the
meta-batch (E-MAML's weight). The adapted parameters are recomputed inside from the
meta-parameters (`chain_with_outputs`, mapped over the tasks), so every gradient and
Hessian-vector product goes through the inner steps.

MAML-TRPO's step shares one linearisation per task (`linearise_task`): the inner steps and
the adapted policy's outputs on the post-update states are evaluated and linearised once at
the sampling parameters; the outputs are the old policies of the KL, the surrogate's gradient
is one transposed product J^T (d loss / d outputs), each of conjugate gradient's products is
the sum over tasks of J^T H_KL J v from the stored residuals (one pass over the tasks per
product), and the line search evaluates the inner steps and the outputs once per trial point
for both the surrogate and the KL.

ProMP's loss takes each inner step's KL against its sampling policy (and E-MAML's term) from
the policy outputs that the inner step's own forward pass computed (`chain_with_outputs`), so
each Adam step runs one forward pass of the policy on the pre-update states, not two.
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
    Outputs,
    PathBatch,
    chain_with_outputs,
    exploration_from_outputs,
    exploration_term,
    inner_step,
    kl_from_outputs,
    masked_mean,
    ppo_clip_surrogate,
    task_map,
)
from mql.onpolicy.policies import log_prob
from mql.onpolicy.trpo import TRPOSettings, hvp_operator, trust_region_update

__all__ = [
    "InnerSettings",
    "MetaState",
    "OuterFn",
    "ProMPSettings",
    "TaskLinearisation",
    "linearise_task",
    "make_promp_update",
    "make_trpo_update",
    "task_jvp",
    "task_vjp",
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


class TaskLinearisation(NamedTuple):
    """One task's adapted policy, linearised at the meta-parameters theta
    (`linearise_task`); stacked over the tasks by `task_map`, each leaf gets a task axis."""

    steps: list[Any]
    """The K inner steps theta'_{k-1} -> theta'_k, each linearised at its input (theta'_0 =
    theta), as `jax.tree_util.Partial`s (a pytree: their residuals are the leaves)."""
    policy: Any
    """theta'_K -> the outputs on the task's post-update states, linearised at theta'_K."""
    adapted: Any
    """theta'_K."""


def linearise_task(
    apply_fn: ApplyFn,
    params: Any,
    pre: tuple[PathBatch, ...],
    obs: jax.Array,
    s: InnerSettings,
) -> tuple[Outputs, TaskLinearisation]:
    """One task's adapted policy after the K inner steps on `pre` from `params`, its outputs
    on `obs` and their linearisation: J = J_post J_K .. J_1 (the inner steps' Jacobians, then
    the policy's in its parameters), each factor linearised once (its residuals stored).

    An inner step theta' = theta + alpha grad J(theta; D) has the symmetric Jacobian
    I + alpha Hess J(theta; D) (autodiff's Hessian of the inner objective, stop-gradients held
    constant), so J^T applies the same linearised steps in reverse order after J_post^T
    (`task_vjp`): each inner step's product in either direction is one forward-mode pass,
    never the transpose of one through the step's own reverse pass."""
    adapted, steps = params, []
    for batch in pre:

        def step(p: Any, batch: PathBatch = batch) -> Any:
            return inner_step(apply_fn, p, batch, s.alpha, s.estimator, s.gamma)

        adapted, lin = jax.linearize(step, adapted)
        steps.append(lin)
    outputs, policy = jax.linearize(lambda p: apply_fn(p, obs), adapted)
    return outputs, TaskLinearisation(steps, policy, adapted)


def task_jvp(lin: TaskLinearisation, tangent: Any) -> Outputs:
    """J v for one task (`linearise_task`), `tangent` a tangent of the meta-parameters."""
    for step in lin.steps:
        tangent = step(tangent)
    return lin.policy(tangent)


def task_vjp(lin: TaskLinearisation, cotangent: Outputs) -> Any:
    """J^T u for one task (`linearise_task`): the policy's transposed product, then the inner
    steps' (symmetric) products in reverse order."""
    (grad,) = jax.linear_transpose(lin.policy, lin.adapted)(cotangent)
    for step in reversed(lin.steps):
        grad = step(grad)
    return grad


def _task_means(x: jax.Array, valid: jax.Array) -> jax.Array:
    """(M,) each task's `masked_mean` of `x` (M, T, R)."""
    return jax.vmap(masked_mean)(x, valid)


def _surrogate(out: Outputs, batch: PathBatch) -> jax.Array:
    """Mean over tasks of `ratio_surrogate` from the policies' outputs on `batch`."""
    ratio = jnp.exp(log_prob(out[0], out[1], batch.actions) - batch.log_probs)
    return jnp.mean(_task_means(ratio * batch.advantages, batch.valid))


def _kl(old: Outputs, out: Outputs, valid: jax.Array) -> jax.Array:
    """Mean over tasks of each task's `kl_from_outputs`."""
    return jnp.mean(jax.vmap(kl_from_outputs)(old, out, valid))


def _task_chain(
    apply_fn: ApplyFn, params: Any, pre: tuple[PathBatch, ...], s: InnerSettings
) -> tuple[list[Any], list[Outputs]]:
    """One task's [theta, theta'_1, .., theta'_K] from its K pre-update batches, and each
    theta'_k's outputs on pre[k] from the inner steps' own passes (`chain_with_outputs`)."""
    return chain_with_outputs(apply_fn, params, pre, s.alpha, s.estimator, s.gamma)


def _chains(apply_fn: ApplyFn, params: Any, pre: tuple[PathBatch, ...], s: InnerSettings) -> Any:
    """Per task: [theta, theta'_1, .., theta'_K], each leaf stacked over the M tasks."""
    return task_map(lambda b: _task_chain(apply_fn, params, b, s)[0], pre)


def _per_task_mean(fn: Callable[..., jax.Array], *args: Any) -> jax.Array:
    return jnp.mean(task_map(fn, *args))


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
    """MAML-TRPO's outer step: TRPO on the meta-parameters (`mql.onpolicy.trpo`) with the
    surrogate and the mean KL of the adapted policies (plus E-MAML's term if asked).

    The Hessian-vector products of the mean KL through the inner steps, at the sampling
    parameters: `gauss_newton` (J^T H_KL J with J the Jacobian of the adapted policies'
    outputs, `linearise_task`: exact there, since the KL's gradient is zero) or
    `full` (forward over reverse of the KL's gradient, `hvp_operator`: the same numbers, third
    derivatives of the policy through the inner step, slower); on the first `hvp_tasks` tasks
    of the meta-batch (0: all). The surrogate's gradient, the old policies and the line search
    share the linearisation of the whole meta-batch (see the module docstring)."""

    def update(
        state: MetaState, pre: tuple[PathBatch, ...], post: PathBatch, post_score: jax.Array
    ) -> tuple[MetaState, dict[str, Any]]:
        flat0, unravel = ravel_pytree(state.params)
        outputs, lin = task_map(
            lambda b, o: linearise_task(apply_fn, state.params, b, o, inner), pre, post.obs
        )
        old = jax.tree_util.tree_map(jax.lax.stop_gradient, outputs)

        def summed_vjp(lins: TaskLinearisation, cotangents: Outputs) -> jax.Array:
            """sum_i J_i^T u_i, flat."""
            per_task = task_map(lambda li, u: ravel_pytree(task_vjp(li, u))[0], lins, cotangents)
            return per_task.sum(axis=0)

        def exploration(flat: jax.Array, chain: list[Any] | None = None) -> jax.Array:
            if chain is None:
                chain = _chains(apply_fn, unravel(flat), pre, inner)
            return inner.exploration_coef * _exploration(apply_fn, chain, pre, post_score)

        # the loss and its gradient: J^T (d loss / d outputs), plus E-MAML's term's own
        surr0, dsurr = jax.value_and_grad(_surrogate)(old, post)
        loss0 = -surr0
        grad = summed_vjp(lin, jax.tree_util.tree_map(jnp.negative, dsurr))
        if inner.exploration_coef > 0:
            explo0, dexplo = jax.value_and_grad(exploration)(flat0)
            loss0, grad = loss0 - explo0, grad - dexplo

        def loss_and_kl(flat: jax.Array) -> tuple[jax.Array, jax.Array]:
            chain = _chains(apply_fn, unravel(flat), pre, inner)
            out = task_map(apply_fn, chain[-1], post.obs)
            loss = -_surrogate(out, post)
            if inner.exploration_coef > 0:
                loss = loss - exploration(flat, chain)
            return loss, _kl(old, out, post.valid)

        # the products of CG: on the first `hvp_tasks` tasks (all if 0; the tasks are drawn at
        # random, so their mean KL's Hessian estimates the whole batch's)
        n = hvp_tasks or post.valid.shape[0]
        head = lambda tree: jax.tree_util.tree_map(lambda x: x[:n], tree)  # noqa: E731
        pre_n, post_n, old_n = head(pre), head(post), head(old)
        if hvp == "full":

            def kl_n(flat: jax.Array) -> jax.Array:
                adapted = _chains(apply_fn, unravel(flat), pre_n, inner)[-1]
                return _kl(old_n, task_map(apply_fn, adapted, post_n.obs), post_n.valid)

            matvec = hvp_operator(kl_n, flat0, s.cg_damping)
        else:

            def task_product(
                li: TaskLinearisation, old_i: Outputs, valid: jax.Array, v: jax.Array
            ) -> jax.Array:
                """J_i^T H_i J_i v, H_i the Hessian of task i's KL / n in its outputs."""
                kl_i = lambda o: kl_from_outputs(old_i, o, valid) / n  # noqa: E731
                hju = jax.jvp(jax.grad(kl_i), (old_i,), (task_jvp(li, unravel(v)),))[1]
                return ravel_pytree(task_vjp(li, hju))[0]

            def matvec(v: jax.Array) -> jax.Array:
                products = task_map(
                    lambda li, o, valid: task_product(li, o, valid, v),
                    head(lin),
                    old_n,
                    post_n.valid,
                )
                return products.sum(axis=0) + s.cg_damping * v

        kl0 = _kl(old, outputs, post.valid)
        flat, metrics = trust_region_update(loss0, grad, matvec, loss_and_kl, flat0, s, kl0)
        return state._replace(params=unravel(flat)), metrics

    return jax.jit(update)


class ProMPSettings(NamedTuple):
    clip: float
    outer_steps: int
    adaptive_kl: bool
    target_inner_kl: float


def _task_inner_kls(olds: list[Outputs], outputs: list[Outputs], pre: tuple) -> jax.Array:
    """(K,) one task's KL of each inner step's policy theta'_k against its sampling policy
    olds[k] on the states pre[k] sampled by it, from theta'_k's outputs there (`outputs[k]`, as
    `chain_with_outputs` returns them)."""
    return jnp.stack([kl_from_outputs(olds[k], outputs[k], b.valid) for k, b in enumerate(pre)])


def make_promp_update(
    apply_fn: ApplyFn,
    inner: InnerSettings,
    optimizer: optax.GradientTransformation,
    s: ProMPSettings,
) -> OuterFn:
    """ProMP's outer update: `outer_steps` Adam steps on the clipped surrogate of the adapted
    policies plus eta_k times the KL of each inner step's policy against its sampling policy
    (Rothfuss et al. 2019, eq. 11 and Algorithm 1), then, if asked, eta_k halved or doubled.

    The loss is the mean over tasks of each task's loss, so each Adam step's gradient is the
    mean of the tasks' own gradients: each is taken inside one pass over the tasks
    (`task_map`), its forward and backward passes through the inner steps back to back on
    that task's states, where a gradient of the whole batch's mean would store every task's
    intermediate values before running back through them (measured 1.6x faster on
    cheetah-dir's and ant-goal's batches, docs/performance.md; the same step up to rounding,
    `tests/test_maml_maths.py`)."""

    def update(
        state: MetaState, pre: tuple[PathBatch, ...], post: PathBatch, post_score: jax.Array
    ) -> tuple[MetaState, dict[str, Any]]:
        # each inner step's sampling policy on its states, from the steps' own forward passes
        _, olds = task_map(lambda b: _task_chain(apply_fn, state.params, b, inner), pre)
        olds = jax.lax.stop_gradient(olds)

        def task_loss(
            params: Any,
            kl_coef: jax.Array,
            pre_i: tuple[PathBatch, ...],
            post_i: PathBatch,
            olds_i: list[Outputs],
            score_i: jax.Array,
        ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            """One task's -clipped surrogate + sum_k eta_k KL_k (- E-MAML's term); the KLs and
            E-MAML's term use the outputs of the inner steps' own forward passes."""
            chain, outputs = _task_chain(apply_fn, params, pre_i, inner)
            surr = ppo_clip_surrogate(apply_fn, chain[-1], post_i, s.clip)
            kls = _task_inner_kls(olds_i, outputs, pre_i)
            loss = -surr + jnp.sum(kl_coef * kls)
            if inner.exploration_coef > 0:
                explo = sum(
                    exploration_from_outputs(outputs[k], b, score_i) for k, b in enumerate(pre_i)
                )
                loss = loss - inner.exploration_coef * explo
            return loss, (surr, kls)

        task_grad = jax.value_and_grad(task_loss, has_aux=True)

        def step(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], Any]:
            params, opt_state = carry
            (loss, (surr, kls)), grads = task_map(
                lambda *task: task_grad(params, state.kl_coef, *task), pre, post, olds, post_score
            )
            grads = jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), grads)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), {
                "losses/outer_loss": jnp.mean(loss),
                "losses/surrogate": jnp.mean(surr),
                "losses/inner_kl": jnp.mean(kls),
            }

        (params, opt_state), trace = jax.lax.scan(
            step, (state.params, state.opt_state), None, length=s.outer_steps
        )
        kl_coef = state.kl_coef
        if s.adaptive_kl:

            def task_kls(pre_i: tuple[PathBatch, ...], olds_i: list[Outputs]) -> jax.Array:
                _, outputs = _task_chain(apply_fn, params, pre_i, inner)
                return _task_inner_kls(olds_i, outputs, pre_i)

            kls = jnp.mean(task_map(task_kls, pre, olds), axis=0)
            kl_coef = jnp.where(kls < s.target_inner_kl / 1.5, kl_coef / 2.0, kl_coef)
            kl_coef = jnp.where(kls > s.target_inner_kl * 1.5, kl_coef * 2.0, kl_coef)
        metrics = {k: v[-1] for k, v in trace.items()}
        metrics["losses/outer_loss_before"] = trace["losses/outer_loss"][0]
        metrics["losses/kl_coef"] = jnp.mean(kl_coef)
        return MetaState(params, opt_state, state.key, kl_coef), metrics

    return jax.jit(update)
