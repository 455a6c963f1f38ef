"""The trust-region step of TRPO (Schulman et al. 2015, §6 and Appendix C) on a flat parameter
vector, as MAML-TRPO's outer step uses it (Finn et al. 2017, §3.2; ProMP's `ConjugateGradient
Optimizer` and rllab's have the same structure).

- `hvp_operator(f, x, damping)`: v -> (H + damping I) v with H the exact Hessian of `f` at `x`,
  by forward-over-reverse differentiation (`jax.linearize` of `jax.grad`: the forward pass and
  the residuals are computed once, each product costs one linear pass). ProMP took it by finite
  differences of gradients; here it is exact, through whatever `f` contains (for MAML-TRPO, the
  inner adaptation step).
- `conjugate_gradient(matvec, b, iters)`: x with (H + damping I) x ~= b (Nocedal & Wright,
  Algorithm 5.2), stopping early once the squared residual is below `residual_tol`;
  `conjugate_gradient_solve` also returns (H + damping I) x, accumulated from the products CG
  takes (x = sum_k alpha_k p_k, so A x = sum_k alpha_k A p_k: no extra product).
- `backtracking_line_search`: x0 + ratio^k * full_step for k = 0, 1, .. max_steps - 1, the first
  whose loss is below the loss at x0 and whose constraint is within the bound; x0 itself when none
  is (TRPO Appendix C).
- `trust_region_update`: given the loss and gradient g at x0, the search direction
  s = -(H + damping I)^-1 g by CG, the full step sqrt(2 delta / s^T H s) s (the step at which
  the quadratic model of the constraint reaches `max_kl`; s^T H s from CG's accumulated
  product), then the line search. `trpo_step` takes g by `jax.value_and_grad` of the loss and
  calls it; MAML-TRPO's outer step (`mql.algos.maml.outer`) supplies g, the products and the
  line search's function from one shared linearisation of the adapted policies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "CGResult",
    "LineSearchResult",
    "TRPOSettings",
    "backtracking_line_search",
    "conjugate_gradient",
    "conjugate_gradient_solve",
    "gauss_newton_operator",
    "hvp",
    "hvp_operator",
    "trpo_step",
    "trust_region_update",
]

Scalar = Callable[[jax.Array], jax.Array]


class TRPOSettings(NamedTuple):
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    backtrack_ratio: float = 0.8
    max_backtracks: int = 15


def hvp(f: Scalar, x: jax.Array, v: jax.Array) -> jax.Array:
    """H v, H the Hessian of the scalar function `f` at `x` (forward over reverse)."""
    return jax.jvp(jax.grad(f), (x,), (v,))[1]


def hvp_operator(f: Scalar, x: jax.Array, damping: float = 0.0) -> Callable[[jax.Array], jax.Array]:
    """v -> (H + damping I) v at `x`, linearised once (see the module docstring)."""
    _, lin = jax.linearize(jax.grad(f), x)
    return lambda v: lin(v) + damping * v


def gauss_newton_operator(
    outputs_fn: Callable[[jax.Array], Any],
    divergence: Callable[[Any], jax.Array],
    x: jax.Array,
    damping: float = 0.0,
) -> Callable[[jax.Array], jax.Array]:
    """v -> (J^T H_D J + damping I) v at `x`, J the Jacobian of `outputs_fn` (the policy's
    outputs, a pytree) and H_D the Hessian of `divergence` in the outputs at `outputs_fn(x)`.

    For f = divergence o outputs_fn, Hess f = J^T H_D J + sum_i dD/dout_i Hess out_i (Gauss-Newton
    decomposition; Schraudolph 2002, Martens 2020 §9); where the divergence is at its minimum
    (TRPO's KL at the sampling parameters) its gradient is zero and the second term vanishes, so
    this is the exact Hessian-vector product there, without third derivatives of
    `outputs_fn`. `outputs_fn` is linearised once; each product is one forward-mode and one
    transposed linear pass of it, and one Hessian-vector product of the divergence in the
    outputs (elementwise for a Gaussian KL)."""
    out0, jvp = jax.linearize(outputs_fn, x)
    vjp = jax.linear_transpose(jvp, x)
    grad_d = jax.grad(divergence)

    def matvec(v: jax.Array) -> jax.Array:
        hu = jax.jvp(grad_d, (out0,), (jvp(v),))[1]
        return vjp(hu)[0] + damping * v

    return matvec


class CGResult(NamedTuple):
    x: jax.Array
    """The approximate solution of A x = b."""
    product: jax.Array
    """A x, accumulated from CG's products (equal to matvec(x) up to rounding)."""


def conjugate_gradient_solve(
    matvec: Callable[[jax.Array], jax.Array],
    b: jax.Array,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> CGResult:
    """Approximate solution x of A x = b for a symmetric positive definite A given as `matvec`,
    from x = 0 (Nocedal & Wright, Algorithm 5.2), and A x; at most `iters` products with A."""

    def body(_: int, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        x, ax, r, p, rr = state
        active = rr > residual_tol
        ap = matvec(p)
        alpha = rr / jnp.where(active, p @ ap, 1.0)
        x_new, ax_new, r_new = x + alpha * p, ax + alpha * ap, r - alpha * ap
        rr_new = r_new @ r_new
        p_new = r_new + (rr_new / jnp.where(active, rr, 1.0)) * p
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
        return keep(x_new, x), keep(ax_new, ax), keep(r_new, r), keep(p_new, p), keep(rr_new, rr)

    zero = jnp.zeros_like(b)
    x, ax, *_ = jax.lax.fori_loop(0, iters, body, (zero, zero, b, b, b @ b))
    return CGResult(x, ax)


def conjugate_gradient(
    matvec: Callable[[jax.Array], jax.Array],
    b: jax.Array,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> jax.Array:
    """Approximate solution of A x = b for a symmetric positive definite A given as `matvec`,
    from x = 0 (Nocedal & Wright, Algorithm 5.2); at most `iters` products with A."""
    return conjugate_gradient_solve(matvec, b, iters, residual_tol).x


class LineSearchResult(NamedTuple):
    x: jax.Array
    """The accepted point (x0 when no step was accepted)."""
    step: jax.Array
    """Index k of the accepted step ratio^k (-1: none accepted)."""
    loss: jax.Array
    """The loss at `x`."""
    constraint: jax.Array
    """The constraint at `x`."""


def backtracking_line_search(
    loss_and_constraint: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    x0: jax.Array,
    full_step: jax.Array,
    loss0: jax.Array,
    max_constraint: float,
    ratio: float = 0.8,
    max_steps: int = 15,
    constraint0: jax.Array | None = None,
) -> LineSearchResult:
    """The first of x0 + ratio^k full_step (k < max_steps) that lowers the loss below `loss0` with
    the constraint <= `max_constraint` (NaN fails both); x0 if none does. `constraint0`: the
    constraint at x0, reported when no step is accepted (default: evaluated at x0)."""

    def cond(state: tuple[jax.Array, ...]) -> jax.Array:
        k, accepted = state[0], state[1]
        return (~accepted) & (k < max_steps)

    def body(state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        k = state[0]
        x = x0 + ratio ** k.astype(x0.dtype) * full_step
        loss, constraint = loss_and_constraint(x)
        ok = (loss < loss0) & (constraint <= max_constraint)
        return k + 1, ok, x, loss, constraint

    zero = jnp.zeros((), x0.dtype)
    init = (jnp.zeros((), jnp.int32), jnp.zeros((), bool), x0, zero, zero)
    k, accepted, x, loss, constraint = jax.lax.while_loop(cond, body, init)
    if constraint0 is None:
        _, constraint0 = loss_and_constraint(x0)
    return LineSearchResult(
        x=jnp.where(accepted, x, x0),
        step=jnp.where(accepted, k - 1, -1),
        loss=jnp.where(accepted, loss, loss0),
        constraint=jnp.where(accepted, constraint, constraint0),
    )


def trust_region_update(
    loss0: jax.Array,
    grad: jax.Array,
    matvec: Callable[[jax.Array], jax.Array],
    loss_and_constraint: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    x0: jax.Array,
    s: TRPOSettings,
    constraint0: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """TRPO's update of `x0` from the loss `loss0` and its gradient `grad` there, `matvec` the
    damped product with the constraint's Hessian at `x0` and `loss_and_constraint` the function
    the line search evaluates (see the module docstring)."""
    cg = conjugate_gradient_solve(matvec, -grad, s.cg_iters)
    shs = cg.x @ cg.product
    full_step = jnp.sqrt(2.0 * s.max_kl / (shs + 1e-8)) * cg.x
    result = backtracking_line_search(
        loss_and_constraint,
        x0,
        full_step,
        loss0,
        s.max_kl,
        s.backtrack_ratio,
        s.max_backtracks,
        constraint0,
    )
    metrics = {
        "losses/outer_loss_before": loss0,
        "losses/outer_loss": result.loss,
        "losses/outer_kl": result.constraint,
        "losses/line_search_step": result.step.astype(jnp.float32),
        "losses/grad_norm": jnp.linalg.norm(grad),
    }
    return result.x, metrics


def trpo_step(
    loss_fn: Scalar,
    kl_fn: Scalar,
    x0: jax.Array,
    s: TRPOSettings,
    matvec: Callable[[jax.Array], jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One TRPO update of the flat parameters `x0` (see the module docstring): minimise
    `loss_fn` subject to `kl_fn` <= `s.max_kl`, with `kl_fn` zero and minimal at `x0`.
    `matvec`: the damped product with the KL's Hessian at `x0` (default:
    `hvp_operator(kl_fn, x0, s.cg_damping)`)."""
    loss0, grad = jax.value_and_grad(loss_fn)(x0)
    if matvec is None:
        matvec = hvp_operator(kl_fn, x0, s.cg_damping)
    return trust_region_update(loss0, grad, matvec, lambda x: (loss_fn(x), kl_fn(x)), x0, s)
