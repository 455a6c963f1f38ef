"""Tests for mql.offpolicy.td3 and mql.offpolicy.networks: losses re-derived independently,
gradient routing between actor and critic, delayed actor/target updates, the fused multi-update,
and the GRU against a NumPy implementation of PyTorch's GRU equations."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mql.offpolicy.networks import ContextGRU
from mql.offpolicy.replay import Batch, ReplayBuffer
from mql.offpolicy.td3 import TD3, Anchor, TD3Spec, no_anchor, proximal

OBS, ACT, H, CTX = 3, 2, 3, 4
FEAT = ACT + 1 + OBS
B = 32
LR = 1e-3


@functools.cache
def jitted_update(td3: TD3):
    """One compiled update of `td3` (the learner itself compiles only K-update calls)."""
    return jax.jit(td3.update)


def make_spec(mode: str = "separate", **kw) -> TD3Spec:
    base = dict(
        obs_dim=OBS,
        act_dim=ACT,
        history_len=H,
        hidden=(16, 16),
        context_dim=CTX,
        context_mode=mode,
        gamma=0.9,
        tau=0.25,  # large, so a Polyak step is clearly visible
        policy_noise=0.4,
        noise_clip=0.5,
        policy_freq=2,
    )
    base.update(kw)
    return TD3Spec(**base)


_TD3_CACHE: dict[TD3Spec, TD3] = {}


def get_td3(spec: TD3Spec) -> TD3:
    """One TD3 per spec, so its jitted functions compile once for the whole module."""
    if spec not in _TD3_CACHE:
        _TD3_CACHE[spec] = TD3(spec)
    return _TD3_CACHE[spec]


def random_batch(seed: int, n: int = B) -> Batch:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    window = rng.normal(size=(n, H + 1, FEAT)).astype(f32)
    return Batch(
        obs=rng.normal(size=(n, OBS)).astype(f32),
        action=rng.uniform(-1, 1, size=(n, ACT)).astype(f32),
        reward=rng.normal(size=n).astype(f32),
        next_obs=rng.normal(size=(n, OBS)).astype(f32),
        done=(rng.uniform(size=n) < 0.3).astype(f32),
        task=rng.integers(0, 5, size=n).astype(np.int32),
        history=window[:, :H],
        next_history=window[:, 1:],
    )


def tree_perturb(tree, seed: int, scale: float):
    """Every leaf plus scale * N(0, 1) noise (NumPy: no compilation)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(
            np.asarray(x) + scale * rng.standard_normal(x.shape).astype(np.float32)
        ),
        tree,
    )


_STATE_CACHE: dict[tuple[TD3Spec, int], object] = {}
_JIT_CACHE: dict[tuple[TD3Spec, str], object] = {}


def jitted(td3: TD3, name: str):
    """`jax.jit` of a TD3 method, one per (spec, method), so tests compile it once."""
    if (td3.spec, name) not in _JIT_CACHE:
        _JIT_CACHE[td3.spec, name] = jax.jit(getattr(td3, name))
    return _JIT_CACHE[td3.spec, name]


def init_state(td3: TD3, seed: int = 0):
    return td3.init(jax.random.PRNGKey(seed), LR)


def make_state(td3: TD3, seed: int = 0):
    """A fresh state whose targets DIFFER from the online networks (so a test can tell which
    one a loss uses). Cached: states are immutable pytrees."""
    if (td3.spec, seed) not in _STATE_CACHE:
        state = init_state(td3, seed)
        _STATE_CACHE[td3.spec, seed] = state.replace(
            actor_target=tree_perturb(state.actor, 1000 + seed, 0.1),
            critic_target=tree_perturb(state.critic, 2000 + seed, 0.1),
        )
    return _STATE_CACHE[td3.spec, seed]


def assert_trees_close(a, b, rtol=1e-6, atol=1e-6):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def assert_trees_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def trees_differ_everywhere(a, b) -> bool:
    return all(
        not np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


# ------------------------------------------------------------------------- GRU vs NumPy


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_gru(params: dict, history: np.ndarray) -> np.ndarray:
    """PyTorch's GRU, step by step: r, z (update gate), n, h' = (1 - z) n + z h; h_0 = 0.

    Flax stores the input weights as (feat, 3h) and the recurrent ones as (h, 3h), the gate
    blocks in PyTorch's order (r, z, n), i.e. weight_ih_l0 / weight_hh_l0 transposed.
    """
    p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
    hid = p["w_h"].shape[0]
    W_ir, W_iz, W_in = (p["w_in"][:, i * hid : (i + 1) * hid] for i in range(3))
    W_hr, W_hz, W_hn = (p["w_h"][:, i * hid : (i + 1) * hid] for i in range(3))
    b_ir, b_iz, b_in = (p["b_in"][i * hid : (i + 1) * hid] for i in range(3))
    b_hr, b_hz, b_hn = (p["b_h"][i * hid : (i + 1) * hid] for i in range(3))
    x_all = np.asarray(history, np.float64)
    h = np.zeros((*x_all.shape[:-2], hid))
    for t in range(x_all.shape[-2]):
        x = x_all[..., t, :]
        r = _sigmoid(x @ W_ir + b_ir + h @ W_hr + b_hr)
        z = _sigmoid(x @ W_iz + b_iz + h @ W_hz + b_hz)
        n = np.tanh(x @ W_in + b_in + r * (h @ W_hn + b_hn))
        h = (1.0 - z) * n + z * h
    return h


@pytest.mark.parametrize("hist_len", [1, 3, 7])
def test_gru_matches_numpy_recurrence(hist_len):
    gru = ContextGRU(5)
    rng = np.random.default_rng(hist_len)
    history = rng.normal(size=(6, hist_len, FEAT)).astype(np.float32)
    params = gru.init(jax.random.PRNGKey(hist_len), history)
    # larger-than-init weights so every gate is far from linear
    params = tree_perturb(params, 7, 0.5)
    shapes = {k: v.shape for k, v in params["params"].items()}
    assert shapes == {"w_in": (FEAT, 15), "b_in": (15,), "w_h": (5, 15), "b_h": (15,)}
    out = np.asarray(gru.apply(params, history))
    assert out.shape == (6, 5)
    np.testing.assert_allclose(out, numpy_gru(params, history), rtol=1e-5, atol=1e-5)


def test_gru_leading_dims_and_order_matter():
    gru = ContextGRU(4)
    rng = np.random.default_rng(0)
    history = rng.normal(size=(2, 3, 5, FEAT)).astype(np.float32)
    params = gru.init(jax.random.PRNGKey(0), history)
    out = np.asarray(gru.apply(params, history))
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out, numpy_gru(params, history), rtol=1e-5, atol=1e-5)
    # the context is not permutation invariant (paper, Remark 2)
    reversed_out = np.asarray(gru.apply(params, history[..., ::-1, :]))
    assert not np.allclose(out, reversed_out, atol=1e-4)


def jnp_gru(params: dict, history: jax.Array) -> jax.Array:
    """The same PyTorch GRU equations as `numpy_gru`, in jnp (plain autodiff, no custom VJP)."""
    p = params["params"]
    hid = p["w_h"].shape[0]
    blk = lambda a, i: a[..., i * hid : (i + 1) * hid]  # noqa: E731
    h = jnp.zeros((*history.shape[:-2], hid), history.dtype)
    for t in range(history.shape[-2]):
        x = history[..., t, :]
        gi = x @ p["w_in"] + p["b_in"]
        gh = h @ p["w_h"] + p["b_h"]
        r = jax.nn.sigmoid(blk(gi, 0) + blk(gh, 0))
        z = jax.nn.sigmoid(blk(gi, 1) + blk(gh, 1))
        n = jnp.tanh(blk(gi, 2) + r * blk(gh, 2))
        h = (1.0 - z) * n + z * h
    return h


@pytest.mark.parametrize(("lead", "hist_len"), [((6,), 1), ((6,), 4), ((2, 3), 5)])
def test_gru_gradients_match_plain_autodiff(lead, hist_len):
    """d<ContextGRU(params, history), g>/d(params, history) equals plain autodiff of the
    reference recurrence (guards any hand-written or fused backward pass)."""
    gru = ContextGRU(5)
    rng = np.random.default_rng(10 + hist_len)
    history = jnp.asarray(rng.normal(size=(*lead, hist_len, FEAT)).astype(np.float32))
    cot = jnp.asarray(rng.normal(size=(*lead, 5)).astype(np.float32))
    params = tree_perturb(gru.init(jax.random.PRNGKey(1), history), 11, 0.5)

    def pair(fn):
        return jax.jit(jax.grad(lambda p, x: jnp.sum(fn(p, x) * cot), argnums=(0, 1)))

    g_params, g_hist = pair(gru.apply)(params, history)
    r_params, r_hist = pair(jnp_gru)(params, history)
    assert_trees_close(g_params, r_params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(g_hist), np.asarray(r_hist), rtol=1e-4, atol=1e-5)
    if hist_len > 1:  # with H = 1, h_0 = 0 gives w_h no gradient
        assert _all_nonzero(g_params)


def test_gru_init_is_pytorch_uniform():
    gru = ContextGRU(16)
    params = gru.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, FEAT)))
    bound = 1.0 / np.sqrt(16)
    for v in jax.tree_util.tree_leaves(params):
        v = np.asarray(v)
        assert np.all(np.abs(v) <= bound) and np.abs(v).max() > 0.8 * bound


# -------------------------------------------------------------------------- parameters


def test_param_trees_per_context_mode():
    sep = init_state(get_td3(make_spec("separate")))
    assert set(sep.actor) == {"mlp", "gru"} and set(sep.critic) == {"mlp", "gru"}
    # actor and critic GRUs are distinct networks (different initialisations)
    assert trees_differ_everywhere(sep.actor["gru"], sep.critic["gru"])
    # actor input is [obs, z]; critic input is [obs, action, z]
    assert sep.actor["mlp"]["params"]["mlp"]["Dense_0"]["kernel"].shape == (OBS + CTX, 16)
    assert sep.critic["mlp"]["params"]["q1"]["Dense_0"]["kernel"].shape == (OBS + ACT + CTX, 16)

    shared = init_state(get_td3(make_spec("shared")))
    assert set(shared.actor) == {"mlp"} and set(shared.critic) == {"mlp", "gru"}

    none = init_state(get_td3(make_spec("none")))
    assert set(none.actor) == {"mlp"} and set(none.critic) == {"mlp"}
    assert none.actor["mlp"]["params"]["mlp"]["Dense_0"]["kernel"].shape == (OBS, 16)
    assert none.critic["mlp"]["params"]["q1"]["Dense_0"]["kernel"].shape == (OBS + ACT, 16)

    for st in (sep, shared, none):
        assert_trees_equal(st.actor, st.actor_target)
        assert_trees_equal(st.critic, st.critic_target)
        assert int(st.updates) == 0
        assert float(st.actor_opt.hyperparams["learning_rate"]) == pytest.approx(LR)
        assert float(st.critic_opt.hyperparams["learning_rate"]) == pytest.approx(LR)


def test_fresh_optimizers_sets_lr_and_resets_moments():
    td3 = get_td3(make_spec())
    state = make_state(td3)
    state, _ = jitted_update(td3)(state, random_batch(0), jnp.ones(B), no_anchor(state))
    fresh = td3.fresh_optimizers(state, 3e-4)
    assert float(fresh.actor_opt.hyperparams["learning_rate"]) == pytest.approx(3e-4)
    assert float(fresh.critic_opt.hyperparams["learning_rate"]) == pytest.approx(3e-4)
    for opt in (fresh.actor_opt, fresh.critic_opt):
        assert int(opt.inner_state[0].count) == 0
        assert all(
            float(jnp.abs(m).max()) == 0 for m in jax.tree_util.tree_leaves(opt.inner_state[0].mu)
        )
    assert_trees_equal(fresh.actor, state.actor)
    assert_trees_equal(fresh.critic, state.critic)


# -------------------------------------------------------------------- proximal term


def test_proximal_zero_with_zero_gradient_at_anchor():
    td3 = get_td3(make_spec())
    state = make_state(td3)
    coef = jnp.asarray(0.7, jnp.float32)
    for params in (state.actor, state.critic):
        value, grad = jax.value_and_grad(proximal)(params, params, coef)
        assert float(value) == 0.0
        for g in jax.tree_util.tree_leaves(grad):
            assert np.all(np.asarray(g) == 0.0)


def test_proximal_hand_computed():
    td3 = get_td3(make_spec())
    state = make_state(td3)
    coef = 0.3
    moved = tree_perturb(state.critic, 3, 0.05)
    expected = (
        0.5
        * coef
        * sum(
            np.sum((np.asarray(p, np.float64) - np.asarray(a, np.float64)) ** 2)
            for p, a in zip(
                jax.tree_util.tree_leaves(moved),
                jax.tree_util.tree_leaves(state.critic),
                strict=True,
            )
        )
    )
    value, grad = jax.value_and_grad(proximal)(moved, state.critic, jnp.float32(coef))
    assert float(value) == pytest.approx(expected, rel=1e-5)
    # d/dθ λ/2 ||θ - θ0||² = λ (θ - θ0)
    expected_grad = jax.tree_util.tree_map(lambda p, a: coef * (p - a), moved, state.critic)
    assert_trees_close(grad, expected_grad, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------- losses


def _written_out_prox(params, anchor_params, coef):
    """λ/2 ||θ - θ0||² over every leaf, written out (not `mql.offpolicy.td3.proximal`)."""
    leaves = zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(anchor_params), strict=True
    )
    return 0.5 * coef * sum(jnp.sum((p - a) ** 2) for p, a in leaves)


def _reference_critic_loss(td3, critic, state, batch, weights, anchor, key):
    """TD3's clipped double-Q loss written out independently of TD3.critic_loss."""
    s = td3.spec
    gru = ContextGRU(s.context_dim)
    b = batch
    noise = jnp.clip(
        s.policy_noise * jax.random.normal(key, b.action.shape), -s.noise_clip, s.noise_clip
    )
    if s.context_mode == "none":
        z_next_actor = z_next_critic = z = jnp.zeros((b.obs.shape[0], 0))
    else:
        z_next_critic = gru.apply(state.critic_target["gru"], b.next_history)
        z = gru.apply(critic["gru"], b.history)
        z_next_actor = (
            gru.apply(state.actor_target["gru"], b.next_history)
            if s.context_mode == "separate"
            else z_next_critic
        )
    next_a = td3.actor_net.apply(state.actor_target["mlp"], b.next_obs, z_next_actor)
    next_a = jnp.clip(next_a + noise, -1.0, 1.0)
    tq1, tq2 = td3.critic_net.apply(state.critic_target["mlp"], b.next_obs, next_a, z_next_critic)
    y = b.reward + s.gamma * (1.0 - b.done) * jnp.minimum(tq1, tq2)
    q1, q2 = td3.critic_net.apply(critic["mlp"], b.obs, b.action, z)
    per_sample = (q1 - y) ** 2 + (q2 - y) ** 2
    prox = _written_out_prox(critic, anchor.critic, anchor.coef)
    return jnp.mean(weights * per_sample) + prox, per_sample


def _reference_actor_loss(td3, actor, critic, batch, weights, anchor):
    """-mean(w * q1(x, u(x, z_actor), z_critic)) + λ/2 ||θ - θ0||², written out."""
    s = td3.spec
    gru = ContextGRU(s.context_dim)
    b = batch
    if s.context_mode == "none":
        z_actor = z_critic = jnp.zeros((b.obs.shape[0], 0))
    else:
        z_critic = gru.apply(critic["gru"], b.history)
        z_actor = gru.apply(actor["gru"], b.history) if s.context_mode == "separate" else z_critic
    a = td3.actor_net.apply(actor["mlp"], b.obs, z_actor)
    q1, _ = td3.critic_net.apply(critic["mlp"], b.obs, a, z_critic)
    prox = _written_out_prox(actor, anchor.actor, anchor.coef)
    return -jnp.mean(weights * q1) + prox, q1


reference_critic_loss = jax.jit(_reference_critic_loss, static_argnums=0)
reference_actor_loss = jax.jit(_reference_actor_loss, static_argnums=0)


def shifted_anchor(state, coef):
    """An anchor a little away from (actor, critic), so the proximal term is active."""
    return Anchor(
        tree_perturb(state.actor, 8, 0.02),
        tree_perturb(state.critic, 9, 0.02),
        jnp.asarray(coef, jnp.float32),
    )


MODES = ["separate", "shared", "none"]


@pytest.mark.parametrize("mode", MODES)
def test_critic_loss_matches_reference(mode):
    td3 = get_td3(make_spec(mode))
    critic_loss = jitted(td3, "critic_loss")
    state = make_state(td3, seed=1)
    batch = random_batch(1)
    key = jax.random.PRNGKey(42)
    ones = jnp.ones(B)
    free = no_anchor(state)
    loss, metrics = critic_loss(state.critic, state, batch, ones, free, key)
    ref, per_sample = reference_critic_loss(td3, state.critic, state, batch, ones, free, key)
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    assert float(metrics["critic_loss"]) == float(loss)
    # a different noise key changes the target (the noise really is drawn from `key`)
    other, _ = critic_loss(state.critic, state, batch, ones, free, jax.random.PRNGKey(43))
    assert float(other) != float(loss)
    # weights multiply the per-sample TD terms
    doubled, _ = critic_loss(state.critic, state, batch, 2 * ones, free, key)
    assert float(doubled) == pytest.approx(2 * float(loss), rel=1e-6)
    zero, _ = critic_loss(state.critic, state, batch, 0 * ones, free, key)
    assert float(zero) == 0.0
    # arbitrary per-sample weights and an active proximal term around another anchor
    w = jnp.asarray(np.random.default_rng(0).uniform(0, 2, B), jnp.float32)
    anchor = shifted_anchor(state, 0.6)
    loss_w, _ = critic_loss(state.critic, state, batch, w, anchor, key)
    assert float(loss_w) == pytest.approx(
        float(jnp.mean(w * per_sample)) + float(proximal(state.critic, anchor.critic, anchor.coef)),
        rel=1e-5,
    )
    ref_w, _ = reference_critic_loss(td3, state.critic, state, batch, w, anchor, key)
    assert float(loss_w) == pytest.approx(float(ref_w), rel=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_actor_loss_matches_reference(mode):
    td3 = get_td3(make_spec(mode))
    actor_loss = jitted(td3, "actor_loss")
    state = make_state(td3, seed=3)
    batch = random_batch(3)
    ones = jnp.ones(B)
    free = no_anchor(state)
    loss, _ = actor_loss(state.actor, state.critic, batch, ones, free)
    ref, q1 = reference_actor_loss(td3, state.actor, state.critic, batch, ones, free)
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    # weights scale the per-sample objective
    doubled, _ = actor_loss(state.actor, state.critic, batch, 2 * ones, free)
    assert float(doubled) == pytest.approx(2 * float(loss), rel=1e-6)
    w = jnp.asarray(np.random.default_rng(1).uniform(0, 2, B), jnp.float32)
    anchor = shifted_anchor(state, 0.4)
    loss_w, _ = actor_loss(state.actor, state.critic, batch, w, anchor)
    assert float(loss_w) == pytest.approx(
        -float(jnp.mean(w * q1)) + float(proximal(state.actor, anchor.actor, anchor.coef)), rel=1e-5
    )


# ------------------------------------------------------------------- gradient routing


def _all_nonzero(tree) -> bool:
    return all(float(jnp.abs(x).max()) > 0 for x in jax.tree_util.tree_leaves(tree))


def _all_zero(tree) -> bool:
    return all(np.all(np.asarray(x) == 0.0) for x in jax.tree_util.tree_leaves(tree))


def test_critic_loss_gradient_routing_separate():
    """The critic loss trains the critic's MLP and GRU; it gives no gradient to the online actor
    (whose GRU is trained by the actor loss only) nor to the targets (stop_gradient)."""
    td3 = get_td3(make_spec("separate"))
    state = make_state(td3, seed=5)
    batch = random_batch(5)
    anchor = no_anchor(state)

    @jax.jit
    def grads(critic, actor, actor_target, critic_target):
        def loss(c, a, at, ct):
            st = state.replace(actor=a, actor_target=at, critic_target=ct)
            return td3.critic_loss(c, st, batch, jnp.ones(B), anchor, jax.random.PRNGKey(0))[0]

        return jax.grad(loss, argnums=(0, 1, 2, 3))(critic, actor, actor_target, critic_target)

    g_critic, g_actor, g_actor_target, g_critic_target = grads(
        state.critic, state.actor, state.actor_target, state.critic_target
    )
    assert _all_nonzero(g_critic["gru"]) and _all_nonzero(g_critic["mlp"])
    assert _all_zero(g_actor) and _all_zero(g_actor_target) and _all_zero(g_critic_target)

    g_actor = jax.jit(
        jax.grad(lambda a: td3.actor_loss(a, state.critic, batch, jnp.ones(B), anchor)[0])
    )(state.actor)
    assert _all_nonzero(g_actor["gru"]) and _all_nonzero(g_actor["mlp"])


def test_shared_actor_loss_gives_no_gradient_to_shared_gru():
    """In shared mode the actor reads the critic's context through stop_gradient: the actor
    loss's gradient w.r.t. the critic equals the gradient with the action held constant, and
    the action itself has zero gradient w.r.t. the shared GRU."""
    td3 = get_td3(make_spec("shared"))
    state = make_state(td3, seed=6)
    batch = random_batch(6)
    ones = jnp.ones(B)
    gru = ContextGRU(CTX)

    @jax.jit
    def grads(actor, critic):
        g = jax.grad(lambda c: td3.actor_loss(actor, c, batch, ones, no_anchor(state))[0])(critic)
        fixed_action = td3.actor_net.apply(
            actor["mlp"], batch.obs, gru.apply(critic["gru"], batch.history)
        )

        def q_only(c):
            z = gru.apply(c["gru"], batch.history)
            return -jnp.mean(td3.critic_net.apply(c["mlp"], batch.obs, fixed_action, z)[0])

        g_policy = jax.grad(lambda c: jnp.sum(td3._policy(actor, c, batch.obs, batch.history)))
        return g, jax.grad(q_only)(critic), g_policy(critic)

    g, g_fixed, g_policy = grads(state.actor, state.critic)
    assert_trees_close(g, g_fixed, rtol=1e-5, atol=1e-7)
    assert _all_nonzero(g["gru"])  # through q1's own context, as it should
    assert _all_zero(g_policy)


@pytest.mark.parametrize("mode", MODES)
def test_update_equals_manual_td3_step(mode):
    """One update == Adam step on the critic loss, THEN an Adam step on the actor loss evaluated
    with the updated critic, then Polyak targets. So the actor step leaves the critic (and, in
    shared mode, the shared GRU) untouched, and the critic step leaves the actor untouched."""
    td3 = get_td3(make_spec(mode))
    state = make_state(td3, seed=7)
    batch = random_batch(7)
    w = jnp.asarray(np.random.default_rng(2).uniform(0.5, 1.5, B), jnp.float32)
    anchor = shifted_anchor(state, 0.3)
    new, metrics = jitted_update(td3)(state, batch, w, anchor)

    adam = optax.adam(LR)
    tau = td3.spec.tau

    @jax.jit
    def manual(state):
        key, k_noise = jax.random.split(state.key)
        gc = jax.grad(
            lambda c: _reference_critic_loss(td3, c, state, batch, w, anchor, k_noise)[0]
        )(state.critic)
        upd, _ = adam.update(gc, adam.init(state.critic), state.critic)
        critic1 = optax.apply_updates(state.critic, upd)
        ga = jax.grad(lambda a: _reference_actor_loss(td3, a, critic1, batch, w, anchor)[0])(
            state.actor
        )
        upd, _ = adam.update(ga, adam.init(state.actor), state.actor)
        actor1 = optax.apply_updates(state.actor, upd)
        soft = lambda t, p: (1 - tau) * t + tau * p  # noqa: E731
        return (
            key,
            critic1,
            actor1,
            jax.tree_util.tree_map(soft, state.actor_target, actor1),
            jax.tree_util.tree_map(soft, state.critic_target, critic1),
        )

    key, critic1, actor1, actor_target1, critic_target1 = manual(state)
    assert_trees_close(new.critic, critic1)
    assert_trees_close(new.actor, actor1)
    assert_trees_close(new.actor_target, actor_target1)
    assert_trees_close(new.critic_target, critic_target1)
    np.testing.assert_array_equal(np.asarray(new.key), np.asarray(key))
    assert int(new.updates) == 1
    assert np.isfinite(float(metrics["critic_loss"])) and np.isfinite(float(metrics["actor_loss"]))
    # Adam's first step moves each parameter by at most about lr, the largest moves by ~lr
    step = np.concatenate(
        [
            np.abs(np.asarray(x) - np.asarray(y)).ravel()
            for x, y in zip(
                jax.tree_util.tree_leaves(new.critic),
                jax.tree_util.tree_leaves(state.critic),
                strict=True,
            )
        ]
    )
    assert step.max() == pytest.approx(LR, rel=1e-3)


# ------------------------------------------------------------- delayed actor, Polyak


def test_delayed_actor_and_polyak_targets():
    td3 = get_td3(make_spec("separate"))
    assert td3.spec.policy_freq == 2
    tau = td3.spec.tau
    state0 = make_state(td3, seed=8)
    anchor = no_anchor(state0)
    s1, m1 = jitted_update(td3)(state0, random_batch(8), jnp.ones(B), anchor)
    # updates = 0 -> actor step: actor changed, targets moved by exactly tau toward the params
    assert int(s1.updates) == 1
    assert trees_differ_everywhere(s1.actor, state0.actor)
    assert trees_differ_everywhere(s1.critic, state0.critic)
    soft = lambda t, p: (1 - tau) * t + tau * p  # noqa: E731
    assert_trees_close(
        s1.actor_target, jax.tree_util.tree_map(soft, state0.actor_target, s1.actor), 1e-6, 1e-7
    )
    assert_trees_close(
        s1.critic_target, jax.tree_util.tree_map(soft, state0.critic_target, s1.critic), 1e-6, 1e-7
    )
    assert np.isfinite(float(m1["actor_loss"]))

    s2, m2 = jitted_update(td3)(s1, random_batch(9), jnp.ones(B), anchor)
    # updates = 1 -> critic only: actor, its optimiser state and both targets unchanged
    assert int(s2.updates) == 2
    assert trees_differ_everywhere(s2.critic, s1.critic)
    assert_trees_equal(s2.actor, s1.actor)
    assert_trees_equal(s2.actor_opt, s1.actor_opt)
    assert_trees_equal(s2.actor_target, s1.actor_target)
    assert_trees_equal(s2.critic_target, s1.critic_target)
    assert np.isnan(float(m2["actor_loss"]))

    s3, _ = jitted_update(td3)(s2, random_batch(10), jnp.ones(B), anchor)
    # updates = 2 -> actor step again
    assert trees_differ_everywhere(s3.actor, s2.actor)
    assert_trees_close(
        s3.critic_target, jax.tree_util.tree_map(soft, s2.critic_target, s3.critic), 1e-6, 1e-7
    )


def test_policy_freq_three():
    td3 = get_td3(make_spec("none", policy_freq=3))
    state = make_state(td3, seed=9)
    actor_changed = []
    for i in range(6):
        new, _ = jitted_update(td3)(state, random_batch(20 + i), jnp.ones(B), no_anchor(state))
        actor_changed.append(trees_differ_everywhere(new.actor, state.actor))
        state = new
    assert actor_changed == [True, False, False, True, False, False]


# -------------------------------------------------------------------- update_many


def test_update_many_equals_sequential_updates():
    td3 = get_td3(make_spec("separate"))
    state0 = make_state(td3, seed=10)
    K = 5
    batches = [random_batch(100 + k) for k in range(K)]
    rng = np.random.default_rng(3)
    weights = rng.uniform(0.0, 2.0, size=(K, B)).astype(np.float32)
    anchor = Anchor(state0.actor, state0.critic, jnp.asarray(0.2, jnp.float32))

    seq = state0
    critic_losses, actor_losses = [], []
    for k in range(K):
        seq, m = jitted_update(td3)(seq, batches[k], jnp.asarray(weights[k]), anchor)
        critic_losses.append(float(m["critic_loss"]))
        actor_losses.append(float(m["actor_loss"]))

    stacked = Batch(*(np.stack(x) for x in zip(*batches, strict=True)))
    fused, mf = td3.update_many(state0, stacked, jnp.asarray(weights), anchor)

    assert int(fused.updates) == K
    assert_trees_close(fused.actor, seq.actor)
    assert_trees_close(fused.critic, seq.critic)
    assert_trees_close(fused.actor_target, seq.actor_target)
    assert_trees_close(fused.critic_target, seq.critic_target)
    assert_trees_close(fused.actor_opt, seq.actor_opt)
    assert_trees_close(fused.critic_opt, seq.critic_opt)
    np.testing.assert_array_equal(np.asarray(fused.key), np.asarray(seq.key))
    assert float(mf["critic_loss"]) == pytest.approx(np.mean(critic_losses), rel=1e-5)
    assert float(mf["actor_loss"]) == pytest.approx(np.nanmean(actor_losses), rel=1e-5)


def test_update_many_on_a_packed_batch_equals_the_batch():
    """What MQL sends (one (H+1)-row window per sample) gives exactly the same update."""
    td3 = get_td3(make_spec("separate"))
    state0 = make_state(td3, seed=12)
    buf = ReplayBuffer(200, OBS, ACT, H)
    rng = np.random.default_rng(4)
    for ep in range(6):
        n = 9 + ep
        buf.add_episode(rng.normal(size=(n, OBS)), rng.uniform(-1, 1, (n, ACT)),
                        rng.normal(size=n), rng.normal(size=(n, OBS)), ep % 2 == 0, ep)  # fmt: skip
    idx = buf.sample_indices(rng, 3 * B)
    packed = buf.gather_packed(idx).stacked(3)
    full = Batch(*(np.reshape(x, (3, B, *x.shape[1:])) for x in buf.gather(idx)))
    weights = jnp.asarray(rng.uniform(0.5, 1.5, (3, B)), jnp.float32)
    anchor = no_anchor(state0)
    a, ma = td3.update_many(state0, packed, weights, anchor)
    b, mb = td3.update_many(state0, full, weights, anchor)
    leaves_a, leaves_b = jax.tree_util.tree_leaves((a, ma)), jax.tree_util.tree_leaves((b, mb))
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------- acting


@pytest.mark.parametrize("mode", MODES)
def test_act_is_deterministic_policy(mode):
    td3 = get_td3(make_spec(mode))
    state = make_state(td3, seed=11)
    batch = random_batch(11, n=4)
    for i in range(4):
        a = np.asarray(td3.act(state.actor, state.critic, batch.obs[i], batch.history[i]))
        assert a.shape == (ACT,)
        assert np.all(np.abs(a) <= 1.0)
        ref = reference_policy(td3, state, batch.obs[i : i + 1], batch.history[i : i + 1])[0]
        np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)
    z = np.asarray(td3.actor_features(state.actor, state.critic, batch.history))
    assert z.shape == (4, 0 if mode == "none" else CTX)


def reference_policy(td3, state, obs, history):
    s = td3.spec
    gru = ContextGRU(s.context_dim)
    if s.context_mode == "none":
        z = jnp.zeros((len(obs), 0))
    elif s.context_mode == "separate":
        z = gru.apply(state.actor["gru"], history)
    else:
        z = gru.apply(state.critic["gru"], history)
    return np.asarray(td3.actor_net.apply(state.actor["mlp"], obs, z))
