"""The maths under MAML-TRPO and ProMP: Hessian-vector products, conjugate gradient, the line
search, the inner estimators (VPG, LVC, DiCE) and the differentiable inner step, each against an
independent computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from mql.onpolicy.meta_gradient import (
    PathBatch,
    adapted_chain,
    inner_objective,
    inner_step,
    mean_kl,
)
from mql.onpolicy.policies import GaussianMLP, gaussian_kl, log_prob
from mql.onpolicy.trpo import (
    TRPOSettings,
    backtracking_line_search,
    conjugate_gradient,
    gauss_newton_operator,
    hvp,
    hvp_operator,
    trpo_step,
)


def _batch(rng: np.random.Generator, t: int = 5, r: int = 3, d: int = 2, a: int = 2) -> PathBatch:
    valid = np.ones((t, r), np.float32)
    valid[3:, 2] = 0.0  # a shorter episode
    return PathBatch(
        obs=jnp.asarray(rng.normal(size=(t, r, d)), jnp.float32),
        actions=jnp.asarray(rng.normal(size=(t, r, a)), jnp.float32),
        log_probs=jnp.zeros((t, r)),
        advantages=jnp.asarray(rng.normal(size=(t, r)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=(t, r)), jnp.float32),
        baselines=jnp.asarray(rng.normal(size=(t, r)), jnp.float32),
        valid=jnp.asarray(valid),
    )


def _tiny_policy(seed: int = 0) -> tuple[GaussianMLP, dict]:
    module = GaussianMLP(act_dim=2, hidden=(3,), init_std=0.7)
    return module, module.init(jax.random.PRNGKey(seed), jnp.zeros((1, 2)))


def _with_old_log_probs(module: GaussianMLP, params: dict, batch: PathBatch) -> PathBatch:
    mean, log_std = module.apply(params, batch.obs)
    return batch._replace(log_probs=log_prob(mean, log_std, batch.actions) * batch.valid)


def test_hvp_matches_the_explicit_hessian_and_finite_differences():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        w = jnp.asarray(rng.normal(size=(4, 4)))

        def f(x: jax.Array) -> jax.Array:  # a tiny two-layer model's loss
            h = jnp.tanh(w @ x)
            return jnp.sum(h**2) + jnp.sum(jnp.sin(x) * x**2)

        x, v = jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.normal(size=4))
        explicit = jax.hessian(f)(x) @ v
        eps = 1e-5
        g = jax.grad(f)
        finite = (g(x + eps * v) - g(x - eps * v)) / (2 * eps)
        np.testing.assert_allclose(hvp(f, x, v), explicit, rtol=1e-10)
        np.testing.assert_allclose(hvp(f, x, v), finite, rtol=1e-6)
        np.testing.assert_allclose(hvp_operator(f, x, 0.1)(v), explicit + 0.1 * v, rtol=1e-10)


def test_hvp_of_the_kl_through_the_inner_step_matches_the_explicit_hessian():
    """MAML-TRPO's constraint: the mean KL of the adapted policy, a function of the
    meta-parameters through one inner step; its exact HVP against jax.hessian and finite
    differences (float64)."""
    with jax.enable_x64(True):
        module, params = _tiny_policy()
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
        rng = np.random.default_rng(1)
        pre = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), _batch(rng))
        pre = _with_old_log_probs(module, params, pre)
        post = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), _batch(rng))
        flat0, unravel = ravel_pytree(params)

        def adapted(flat: jax.Array) -> dict:
            return inner_step(module.apply, unravel(flat), pre, 0.1, "vpg", 0.99)

        old_mean, old_log_std = module.apply(adapted(flat0), post.obs)

        def kl(flat: jax.Array) -> jax.Array:
            return mean_kl(module.apply, adapted(flat), old_mean, old_log_std, post)

        v = jnp.asarray(rng.normal(size=flat0.shape))
        explicit = jax.jit(jax.hessian(kl))(flat0) @ v
        g = jax.jit(jax.grad(kl))
        eps = 1e-5
        finite = (g(flat0 + eps * v) - g(flat0 - eps * v)) / (2 * eps)
        product = jax.jit(lambda x, u: hvp(kl, x, u))(flat0, v)
        np.testing.assert_allclose(product, explicit, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(product, finite, rtol=1e-5, atol=1e-9)
        assert float(v @ explicit) > 0  # the KL's Hessian at its minimum is positive

        # the Gauss-Newton form J^T H J is the same product there (the KL's gradient is zero)
        def divergence(out: tuple[jax.Array, jax.Array]) -> jax.Array:
            kl = gaussian_kl(old_mean, old_log_std, out[0], out[1])
            return (kl * post.valid).sum() / post.valid.sum()

        gn = jax.jit(
            lambda x, u: gauss_newton_operator(
                lambda f: module.apply(adapted(f), post.obs), divergence, x
            )(u)
        )(flat0, v)
        np.testing.assert_allclose(gn, explicit, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("n", [3, 8])
def test_conjugate_gradient_solves_spd_systems(n):
    with jax.enable_x64(True):
        rng = np.random.default_rng(n)
        m = rng.normal(size=(n, n))
        a = jnp.asarray(m @ m.T + n * np.eye(n))
        b = jnp.asarray(rng.normal(size=n))
        x = conjugate_gradient(lambda v: a @ v, b, iters=n)  # exact in n steps
        np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-8)
        few = conjugate_gradient(lambda v: a @ v, b, iters=1)  # one step: along b
        alpha = float(b @ b / (b @ a @ b))
        np.testing.assert_allclose(few, alpha * b, rtol=1e-10)
        # a zero right-hand side stops at once (no division by zero)
        np.testing.assert_array_equal(conjugate_gradient(lambda v: a @ v, 0 * b, iters=n), 0 * b)


def test_line_search_rejects_constraint_violating_and_non_improving_steps():
    x0, full = jnp.zeros(2), jnp.array([1.0, 0.0])

    def loss_and_kl(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return -x[0], x[0] ** 2  # the loss falls along the step; the "KL" grows

    # the full step (kl 1) and 0.8 (0.64) violate the bound 0.5; 0.8^2 = 0.64 -> kl 0.41 passes
    res = backtracking_line_search(loss_and_kl, x0, full, jnp.asarray(0.0), 0.5, 0.8, 15)
    assert int(res.step) == 2
    np.testing.assert_allclose(res.x, [0.64, 0.0], rtol=1e-6)
    assert float(res.constraint) <= 0.5
    # every step within 15 violates a tiny bound: x0 is kept
    res = backtracking_line_search(loss_and_kl, x0, full, jnp.asarray(0.0), 1e-9, 0.8, 15)
    assert int(res.step) == -1
    np.testing.assert_array_equal(res.x, x0)
    # a step that does not improve the loss is rejected though its KL is fine
    res = backtracking_line_search(loss_and_kl, x0, -full, jnp.asarray(0.0), 10.0, 0.8, 15)
    assert int(res.step) == -1
    np.testing.assert_array_equal(res.x, x0)


def test_trpo_step_on_a_quadratic_lands_on_the_trust_region_boundary():
    """Linear loss g.x, KL = x^T F x / 2: the exact TRPO step is -sqrt(2 delta / g F^-1 g)
    F^-1 g, whose KL is delta; the line search accepts it (k = 0)."""
    with jax.enable_x64(True):
        f = jnp.array([[2.0, 0.5], [0.5, 1.0]])
        g = jnp.array([1.0, -2.0])
        s = TRPOSettings(max_kl=0.01, cg_iters=10, cg_damping=0.0)
        x, m = trpo_step(lambda x: g @ x, lambda x: 0.5 * x @ f @ x, jnp.zeros(2), s)
        nat = np.linalg.solve(f, g)
        expected = -np.sqrt(2 * 0.01 / (g @ nat)) * nat
        np.testing.assert_allclose(x, expected, rtol=1e-5)
        assert int(m["losses/line_search_step"]) == 0
        np.testing.assert_allclose(float(m["losses/outer_kl"]), 0.01, rtol=1e-4)


def test_lvc_gradient_at_the_sampling_policy_equals_reinforce():
    module, params = _tiny_policy()
    batch = _with_old_log_probs(module, params, _batch(np.random.default_rng(2)))
    vpg = jax.grad(lambda p: inner_objective(module.apply, p, batch, "vpg", 0.99))(params)
    lvc = jax.grad(lambda p: inner_objective(module.apply, p, batch, "lvc", 0.99))(params)
    np.testing.assert_allclose(ravel_pytree(lvc)[0], ravel_pytree(vpg)[0], rtol=1e-5, atol=1e-7)
    # the LVC objective's value at theta_old is the mean advantage (ratio 1)
    value = inner_objective(module.apply, params, batch, "lvc", 0.99)
    mean_adv = float((batch.advantages * batch.valid).sum() / batch.valid.sum())
    np.testing.assert_allclose(float(value), mean_adv, rtol=1e-5)
    # away from theta_old the two differ (the LVC ratio is no longer 1)
    moved = jax.tree_util.tree_map(lambda p: p + 0.3, params)
    g1 = jax.grad(lambda p: inner_objective(module.apply, p, batch, "vpg", 0.99))(moved)
    g2 = jax.grad(lambda p: inner_objective(module.apply, p, batch, "lvc", 0.99))(moved)
    assert not np.allclose(ravel_pytree(g1)[0], ravel_pytree(g2)[0], rtol=1e-3)


def test_dice_first_order_gradient_is_reinforce_with_reward_to_go_minus_baseline():
    gamma = 0.9
    module, params = _tiny_policy()
    batch = _with_old_log_probs(module, params, _batch(np.random.default_rng(3)))
    rewards, valid = np.asarray(batch.rewards), np.asarray(batch.valid)
    t_len = rewards.shape[0]
    disc = gamma ** np.arange(t_len)[:, None]
    # A_t = sum_{t' >= t} gamma^t' r_t' - gamma^t b_t within each episode
    to_go = np.flip(np.cumsum(np.flip(disc * rewards * valid, 0), 0), 0)
    adv = (to_go - disc * np.asarray(batch.baselines)) * valid
    reference = batch._replace(advantages=jnp.asarray(adv, jnp.float32))
    vpg = jax.grad(lambda p: inner_objective(module.apply, p, reference, "vpg", gamma))(params)
    dice = jax.grad(lambda p: inner_objective(module.apply, p, batch, "dice", gamma))(params)
    np.testing.assert_allclose(ravel_pytree(dice)[0], ravel_pytree(vpg)[0], rtol=1e-4, atol=1e-6)
    # its value is the mean discounted reward (the baseline term is zero in value)
    value = inner_objective(module.apply, params, batch, "dice", gamma)
    np.testing.assert_allclose(
        float(value), (disc * rewards * valid).sum() / valid.sum(), rtol=1e-5
    )


def test_one_inner_step_is_the_hand_computed_sgd_step():
    """A linear Gaussian policy mean = W s, log-std l: grad_W log pi = ((a - W s) / sigma^2) s^T,
    grad_l log pi = (a - W s)^2 / sigma^2 - 1; the VPG step is theta + alpha mean(A grad log pi)."""
    rng = np.random.default_rng(4)
    batch = _batch(rng)
    w0, l0 = rng.normal(size=(2, 2)).astype(np.float32), np.array([0.2, -0.1], np.float32)

    def apply(p: dict, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = obs @ p["w"]
        return mean, jnp.broadcast_to(p["log_std"], mean.shape)

    params = {"w": jnp.asarray(w0), "log_std": jnp.asarray(l0)}
    alpha = 0.1
    out = inner_step(apply, params, batch, alpha, "vpg", 0.99)
    s, a = np.asarray(batch.obs), np.asarray(batch.actions)
    adv, valid = np.asarray(batch.advantages), np.asarray(batch.valid)
    var = np.exp(2 * l0)
    resid = a - s @ w0  # (T, R, act)
    weight = (adv * valid / valid.sum())[..., None]
    grad_w = np.einsum("trd,tra->da", s, weight * resid / var)
    grad_l = (weight * (resid**2 / var - 1.0)).sum(axis=(0, 1))
    np.testing.assert_allclose(out["w"], w0 + alpha * grad_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["log_std"], l0 + alpha * grad_l, rtol=1e-5, atol=1e-6)
    # two chained steps: the second from the first's result, on its own batch
    second = _batch(np.random.default_rng(5))
    chain = adapted_chain(apply, params, (batch, second), alpha, "vpg", 0.99)
    again = inner_step(apply, out, second, alpha, "vpg", 0.99)
    np.testing.assert_allclose(chain[2]["w"], again["w"], rtol=1e-6)
