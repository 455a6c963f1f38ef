"""The maths under MAML-TRPO and ProMP: Hessian-vector products, conjugate gradient, the line
search, the inner estimators (VPG, LVC, DiCE) and the differentiable inner step, each against an
independent computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from mql.algos.maml.outer import (
    InnerSettings,
    MetaState,
    ProMPSettings,
    linearise_task,
    make_promp_update,
    make_trpo_update,
    task_jvp,
    task_vjp,
)
from mql.onpolicy.meta_gradient import (
    PathBatch,
    adapted_chain,
    chain_with_outputs,
    exploration_term,
    inner_objective,
    inner_step,
    mean_kl,
    ppo_clip_surrogate,
    ratio_surrogate,
    task_map,
)
from mql.onpolicy.policies import GaussianMLP, gaussian_kl, log_prob
from mql.onpolicy.trpo import (
    TRPOSettings,
    backtracking_line_search,
    conjugate_gradient,
    conjugate_gradient_solve,
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
    # the outputs the steps return are each step's input policy on the states of its batch
    same, outputs = chain_with_outputs(apply, params, (batch, second), alpha, "vpg", 0.99)
    np.testing.assert_array_equal(same[2]["w"], chain[2]["w"])
    for policy, b, (mean, log_std) in zip(same[:2], (batch, second), outputs, strict=True):
        np.testing.assert_array_equal(mean, apply(policy, b.obs)[0])
        np.testing.assert_array_equal(log_std, apply(policy, b.obs)[1])


def _meta_batch(module: GaussianMLP, params: dict, m: int, k: int, seed: int) -> tuple:
    """A float64 meta-batch of `m` tasks: `k` pre-update batches, each sampled (log-probs) by
    the policy after the previous inner steps, and the post-update batch of the adapted one."""
    rng = np.random.default_rng(seed)

    def stacked() -> PathBatch:
        tasks = [_batch(rng) for _ in range(m)]
        return jax.tree_util.tree_map(lambda *x: jnp.stack(x).astype(jnp.float64), *tasks)

    def sampled_by(policies: dict, batch: PathBatch) -> PathBatch:
        mean, log_std = task_map(module.apply, policies, batch.obs)
        return batch._replace(log_probs=log_prob(mean, log_std, batch.actions) * batch.valid)

    policies = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (m, *x.shape)), params)
    pre: list[PathBatch] = []
    for _ in range(k):
        pre.append(sampled_by(policies, stacked()))
        policies = task_map(
            lambda b: adapted_chain(module.apply, params, b, 0.1, "vpg", 0.99)[-1], tuple(pre)
        )
    return tuple(pre), sampled_by(policies, stacked())


@pytest.mark.parametrize("estimator,k", [("vpg", 1), ("lvc", 2), ("dice", 2)])
def test_per_task_linearisation_gives_the_kls_exact_hessian_vector_product(estimator, k):
    """MAML-TRPO's products: sum over tasks of J_i^T H_i J_i v, the inner steps' Jacobians
    applied in both directions by forward-mode passes (symmetric), against jax.hessian of the
    mean KL through the K inner steps (float64)."""
    with jax.enable_x64(True):
        module, params = _tiny_policy()
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
        inner = InnerSettings(0.1, estimator, 0.99, 0.0)
        pre, post = _meta_batch(module, params, 3, k, seed=7)
        flat0, unravel = ravel_pytree(params)

        def adapted(flat: jax.Array) -> dict:
            return task_map(
                lambda b: adapted_chain(module.apply, unravel(flat), b, 0.1, estimator, 0.99)[-1],
                pre,
            )

        old = task_map(module.apply, adapted(flat0), post.obs)

        def task_kl(o0: tuple, o1: tuple, valid: jax.Array) -> jax.Array:
            return (gaussian_kl(o0[0], o0[1], o1[0], o1[1]) * valid).sum() / valid.sum()

        def kl(flat: jax.Array) -> jax.Array:
            out = task_map(module.apply, adapted(flat), post.obs)
            return jnp.mean(task_map(task_kl, old, out, post.valid))

        def linearised() -> tuple:
            return task_map(
                lambda b, o: linearise_task(module.apply, params, b, o, inner), pre, post.obs
            )

        def product(v: jax.Array) -> jax.Array:
            outputs, lin = linearised()

            def one(li: object, o: tuple, valid: jax.Array) -> jax.Array:
                kl_i = lambda out: task_kl(o, out, valid) / 3  # noqa: E731
                hju = jax.jvp(jax.grad(kl_i), (o,), (task_jvp(li, unravel(v)),))[1]
                return ravel_pytree(task_vjp(li, hju))[0]

            return task_map(one, lin, outputs, post.valid).sum(axis=0)

        outputs, _ = jax.jit(linearised)()
        np.testing.assert_allclose(outputs[0], old[0], rtol=1e-12)
        rng = np.random.default_rng(8)
        explicit = jax.jit(jax.hessian(kl))(flat0)
        for _ in range(2):
            v = jnp.asarray(rng.normal(size=flat0.shape))
            np.testing.assert_allclose(jax.jit(product)(v), explicit @ v, rtol=1e-8, atol=1e-12)
        # J^T u through the inner steps: the surrogate's gradient, against reverse mode
        u = (jnp.asarray(rng.normal(size=post.actions.shape)),) * 2

        def linear(flat: jax.Array) -> jax.Array:
            out = task_map(module.apply, adapted(flat), post.obs)
            return jnp.sum(out[0] * u[0]) + jnp.sum(out[1] * u[1])

        def transposed() -> jax.Array:
            _, lin = linearised()
            return task_map(lambda li, ui: ravel_pytree(task_vjp(li, ui))[0], lin, u).sum(0)

        np.testing.assert_allclose(
            jax.jit(transposed)(), jax.grad(linear)(flat0), rtol=1e-9, atol=1e-12
        )


def test_conjugate_gradient_accumulates_the_product_of_its_solution():
    """x^T A x for TRPO's step size from CG's own products equals a fresh product."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(9)
        q = rng.normal(size=(6, 6))
        a = jnp.asarray(q @ q.T + 1e-3 * np.eye(6))
        b = jnp.asarray(rng.normal(size=6))
        for iters in (2, 6, 12):  # stopped early, solved, past convergence (frozen)
            res = conjugate_gradient_solve(lambda v: a @ v, b, iters)
            np.testing.assert_allclose(res.product, a @ res.x, rtol=1e-9, atol=1e-12)
            np.testing.assert_array_equal(res.x, conjugate_gradient(lambda v: a @ v, b, iters))


def _reference_trpo_update(module, inner, s, params, pre, post, score, hvp_tasks):
    """MAML-TRPO's outer step as written before the shared per-task linearisation (commit
    6c651e1): the surrogate's gradient by reverse mode through the inner steps, the old
    policies from their own forward pass, products J^T H J by `gauss_newton_operator` (the
    transpose of the linearised inner steps), s^T H s by a fresh product, and the surrogate
    and the KL evaluated separately in the line search."""
    apply_fn = module.apply
    flat0, unravel = ravel_pytree(params)

    def chains(p: dict, batches: tuple) -> list:
        return task_map(
            lambda b: adapted_chain(apply_fn, p, b, inner.alpha, inner.estimator, inner.gamma),
            batches,
        )

    old_mean, old_log_std = task_map(apply_fn, chains(params, pre)[-1], post.obs)

    def loss_fn(flat: jax.Array) -> jax.Array:
        chain = chains(unravel(flat), pre)
        loss = -jnp.mean(task_map(lambda p, b: ratio_surrogate(apply_fn, p, b), chain[-1], post))
        if inner.exploration_coef > 0:
            term = lambda p, b, sc: exploration_term(apply_fn, p, b, sc)  # noqa: E731
            loss = loss - inner.exploration_coef * sum(
                jnp.mean(task_map(term, chain[j], b, score)) for j, b in enumerate(pre)
            )
        return loss

    def kl_fn(flat: jax.Array) -> jax.Array:
        adapted = chains(unravel(flat), pre)[-1]
        kl = lambda p, m, ls, b: mean_kl(apply_fn, p, m, ls, b)  # noqa: E731
        return jnp.mean(task_map(kl, adapted, old_mean, old_log_std, post))

    n = hvp_tasks or post.valid.shape[0]
    head = lambda tree: jax.tree_util.tree_map(lambda x: x[:n], tree)  # noqa: E731
    pre_n, post_n, old_n = head(pre), head(post), head((old_mean, old_log_std))

    def outputs(flat: jax.Array) -> tuple:
        return task_map(apply_fn, chains(unravel(flat), pre_n)[-1], post_n.obs)

    def divergence(out: tuple) -> jax.Array:
        kl = gaussian_kl(old_n[0], old_n[1], out[0], out[1])
        return jnp.mean((kl * post_n.valid).sum(axis=(1, 2)) / post_n.valid.sum(axis=(1, 2)))

    matvec = gauss_newton_operator(outputs, divergence, flat0, s.cg_damping)
    loss0, grad = jax.value_and_grad(loss_fn)(flat0)
    direction = conjugate_gradient(matvec, -grad, s.cg_iters)
    shs = direction @ matvec(direction)
    full_step = jnp.sqrt(2.0 * s.max_kl / (shs + 1e-8)) * direction
    result = backtracking_line_search(
        lambda x: (loss_fn(x), kl_fn(x)), flat0, full_step, loss0, s.max_kl,
        s.backtrack_ratio, s.max_backtracks,
    )  # fmt: skip
    return result.x, result.step, result.loss, result.constraint, loss0


@pytest.mark.parametrize(
    "estimator,k,explore,hvp_tasks,cg_iters",
    [("vpg", 1, 0.0, 0, 10), ("vpg", 2, 0.0, 3, 10), ("lvc", 1, 0.0, 2, 5), ("dice", 2, 0.5, 0, 5)],
)
def test_trpo_outer_step_matches_the_previous_implementation(
    estimator, k, explore, hvp_tasks, cg_iters
):
    """The restructured outer step (one linearisation shared by the gradient, the old
    policies and the products; symmetric inner-step Jacobians; s^T H s from CG; one pass per
    line-search point) takes the step of the previous implementation (float64). The LVC and
    DiCE cases run 5 CG iterations: with 10 on this 19-parameter policy, CG has converged in
    most directions and its later iterations amplify rounding (on the DiCE case, a relative
    change of 1e-15 in the gradient moves the 10-iteration solution by 1e-5, in either
    implementation, even with the KL's Hessian as an explicit matrix)."""
    with jax.enable_x64(True):
        module, params = _tiny_policy(seed=1)
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
        inner = InnerSettings(0.1, estimator, 0.99, explore)
        s = TRPOSettings(max_kl=0.01, cg_iters=cg_iters, cg_damping=1e-5)
        pre, post = _meta_batch(module, params, 4, k, seed=10 + k)
        score = jnp.asarray([1.0, -0.5, 0.2, -0.7])
        x_ref, step_ref, loss_ref, kl_ref, loss0_ref = jax.jit(
            lambda p: _reference_trpo_update(module, inner, s, p, pre, post, score, hvp_tasks)
        )(params)
        update = make_trpo_update(module.apply, inner, s, "gauss_newton", hvp_tasks)
        state = MetaState(params, optax.EmptyState(), jax.random.PRNGKey(0), jnp.zeros(k))
        new_state, metrics = update(state, pre, post, score)
        assert int(step_ref) >= 0  # a step was taken: the comparison is not of x0 with x0
        assert int(metrics["losses/line_search_step"]) == int(step_ref)
        x_new = ravel_pytree(new_state.params)[0]
        np.testing.assert_allclose(x_new, x_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(metrics["losses/outer_loss"]), loss_ref, rtol=1e-9)
        np.testing.assert_allclose(float(metrics["losses/outer_kl"]), kl_ref, rtol=1e-8)
        np.testing.assert_allclose(
            float(metrics["losses/outer_loss_before"]), loss0_ref, rtol=1e-9, atol=1e-15
        )


def _reference_promp_update(module, inner, optimizer, s, state, pre, post, score):
    """ProMP's outer update as written before the per-task gradients (commit d126d30): each
    Adam step's gradient by reverse mode through the mean over tasks of the whole batch's loss,
    the KLs and E-MAML's term each from a forward pass of their own (`mean_kl`,
    `exploration_term`), not from the inner steps' passes."""
    apply_fn = module.apply

    def chains(p: dict) -> list:
        return task_map(
            lambda b: adapted_chain(apply_fn, p, b, inner.alpha, inner.estimator, inner.gamma), pre
        )

    olds = [
        jax.lax.stop_gradient(task_map(apply_fn, c, b.obs))
        for c, b in zip(chains(state.params), pre, strict=False)
    ]

    def kls(chain: list) -> jax.Array:
        kl = lambda p, o, b: mean_kl(apply_fn, p, o[0], o[1], b)  # noqa: E731
        return jnp.stack([jnp.mean(task_map(kl, chain[j], olds[j], b)) for j, b in enumerate(pre)])

    def loss_fn(p: dict) -> jax.Array:
        chain = chains(p)
        clip = lambda q, b: ppo_clip_surrogate(apply_fn, q, b, s.clip)  # noqa: E731
        loss = -jnp.mean(task_map(clip, chain[-1], post)) + jnp.sum(state.kl_coef * kls(chain))
        term = lambda q, b, sc: exploration_term(apply_fn, q, b, sc)  # noqa: E731
        explo = sum(jnp.mean(task_map(term, chain[j], b, score)) for j, b in enumerate(pre))
        return loss - inner.exploration_coef * explo

    params, opt_state, losses = state.params, state.opt_state, []
    for _ in range(s.outer_steps):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params, losses = optax.apply_updates(params, updates), [*losses, loss]
    final = kls(chains(params))
    coef = jnp.where(final < s.target_inner_kl / 1.5, state.kl_coef / 2.0, state.kl_coef)
    coef = jnp.where(final > s.target_inner_kl * 1.5, coef * 2.0, coef)
    return params, coef, losses


def test_promp_update_with_per_task_gradients_matches_the_batch_gradient():
    """ProMP's Adam steps, each on the mean of the tasks' own gradients, take the steps of the
    gradient of the whole batch's loss (float64), losses and adapted eta included; with ProMP's
    LVC estimator, two inner steps (two KL terms) and E-MAML's term, which the update takes from
    the inner steps' own forward passes (`chain_with_outputs`) and the reference from passes of
    their own."""
    estimator, k, explore = "lvc", 2, 0.5
    with jax.enable_x64(True):
        module, params = _tiny_policy(seed=2)
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
        inner = InnerSettings(0.1, estimator, 0.99, explore)
        s = ProMPSettings(clip=0.3, outer_steps=2, adaptive_kl=True, target_inner_kl=1e-4)
        optimizer = optax.adam(1e-2)
        pre, post = _meta_batch(module, params, 4, k, seed=20 + k)
        score = jnp.asarray([1.0, -0.5, 0.2, -0.7])
        kl_coef = jnp.full((k,), 5e-4, jnp.float64)
        state = MetaState(params, optimizer.init(params), jax.random.PRNGKey(0), kl_coef)
        ref_params, ref_coef, ref_losses = jax.jit(
            lambda st: _reference_promp_update(module, inner, optimizer, s, st, pre, post, score)
        )(state)
        new_state, metrics = make_promp_update(module.apply, inner, optimizer, s)(
            state, pre, post, score
        )
        moved = ravel_pytree(ref_params)[0] - ravel_pytree(params)[0]
        assert float(jnp.abs(moved).max()) > 1e-3  # the steps moved the parameters
        np.testing.assert_allclose(
            ravel_pytree(new_state.params)[0], ravel_pytree(ref_params)[0], rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(new_state.kl_coef, ref_coef, rtol=1e-12)
        assert not np.allclose(np.asarray(ref_coef), np.asarray(kl_coef))  # eta was adapted
        np.testing.assert_allclose(
            float(metrics["losses/outer_loss_before"]), ref_losses[0], rtol=1e-9
        )
        np.testing.assert_allclose(float(metrics["losses/outer_loss"]), ref_losses[-1], rtol=1e-9)
