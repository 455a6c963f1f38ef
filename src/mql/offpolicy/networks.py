"""Networks of MQL: the recurrent context encoder, the actor and the twin critic (Flax linen).

Sizes follow the authors' released code (REFERENCE §2): two hidden layers of 300 ReLU units,
a tanh-squashed deterministic actor, twin Q heads, and a one-layer GRU whose final hidden state
over the last H steps of (previous action, previous reward, previous observation) is the
context z (paper §3.1.1). A history is an array (..., H, act_dim + 1 + obs_dim), oldest row
first, zero-padded before the episode start (see `mql.offpolicy.replay`).

`ContextGRU` implements PyTorch's GRU equations (the released code used `torch.nn.GRU`) with the
input projections of all H steps computed as ONE matmul before the recurrence; only the
(hidden x 3*hidden) recurrent matmul runs per step. The numbers are those of a standard GRU.

Its gradient is written by hand (`gru_context`, a `jax.custom_vjp`): the forward pass that keeps
residuals and the backward recurrence each run as one `lax.scan` over time, and the weight
gradients are two matmuls over all H steps at once. Autodiff of the unrolled loop let XLA's CPU
fusion recompute the elementwise recurrence inside later steps (and turn the per-step slices of
the input projection into a sum of H padded copies), which made one backward pass cost ~15x its
forward pass; see docs/performance.md. Without differentiation the loop stays unrolled (fastest
forward). Both paths compute the same GRU; they agree up to float rounding.

`gru_context_native` is the same function with each recurrence in one native kernel call
(`mql.kernels`, XLA's FFI); `ContextGRU(kernel=...)` picks it ("native", or "auto" where the
kernels build). The parameters are the same, so checkpoints load with either.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from mql import kernels
from mql.nn import uniform
from mql.offpolicy.types import GruKernel


class ContextGRU(nn.Module):
    """One-layer GRU over a history; returns the final hidden state (the context z).

    h_0 = 0;  r = σ(x W_ir + b_ir + h W_hr + b_hr);  u = σ(x W_iu + b_iu + h W_hu + b_hu);
    n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn));  h' = (1 - u) ⊙ n + u ⊙ h.
    """

    hidden: int
    kernel: GruKernel = "xla"  # "xla", "native" (mql.kernels) or "auto" (native if it builds)

    @nn.compact
    def __call__(self, history: jax.Array) -> jax.Array:
        feat = history.shape[-1]
        init = uniform(1.0 / float(self.hidden) ** 0.5)
        w_in = self.param("w_in", init, (feat, 3 * self.hidden))
        b_in = self.param("b_in", init, (3 * self.hidden,))
        w_h = self.param("w_h", init, (self.hidden, 3 * self.hidden))
        b_h = self.param("b_h", init, (3 * self.hidden,))
        native = kernels.resolve(self.kernel) == "native"
        return (gru_context_native if native else gru_context)(w_in, b_in, w_h, b_h, history)


def _gru_step(w_h: jax.Array, b_h: jax.Array, h: jax.Array, x: jax.Array):
    """One GRU step from the input projection `x` (..., 3h); returns h' and the gate values."""
    xr, xu, xn = jnp.split(x, 3, axis=-1)
    hr, hu, hn = jnp.split(h @ w_h + b_h, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    u = jax.nn.sigmoid(xu + hu)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - u) * n + u * h, (h, r, u, n, hn)


@jax.custom_vjp
def gru_context(
    w_in: jax.Array, b_in: jax.Array, w_h: jax.Array, b_h: jax.Array, history: jax.Array
) -> jax.Array:
    """Final hidden state of a GRU (h_0 = 0) over `history` (..., H, F), oldest row first."""
    x_proj = history @ w_in + b_in  # (..., H, 3h): every step's input projection at once
    h = jnp.zeros((*history.shape[:-2], w_h.shape[0]), history.dtype)
    for t in range(history.shape[-2]):  # H is static and small: unrolled for XLA fusion
        h, _ = _gru_step(w_h, b_h, h, x_proj[..., t, :])
    return h


def _gru_fwd(w_in, b_in, w_h, b_h, history):
    xs = jnp.moveaxis(history @ w_in + b_in, -2, 0)  # (H, ..., 3h), time-major for the scan
    h0 = jnp.zeros((*history.shape[:-2], w_h.shape[0]), history.dtype)
    h, saved = jax.lax.scan(lambda h, x: _gru_step(w_h, b_h, h, x), h0, xs)
    return h, (w_in, w_h, history, saved)


def _gru_bwd(res, g):
    w_in, w_h, history, (h, r, u, n, hn) = res  # each (H, ..., hidden), time-major
    # Every step's local derivatives at once (no recurrence): with dh the cotangent of a step's
    # output h' = (1 - u) n + u h,  d a_r = dh c_r,  d a_u = dh c_u,  d a_n = dh a_n, and the
    # cotangent of (h W_h + b_h) is dh * [c_r, c_u, a_n r].
    a_n = (1.0 - u) * (1.0 - n * n)  # through n = tanh(a_n)
    c_r = a_n * hn * r * (1.0 - r)  # a_n = x_n + r * hn, r = sigmoid(a_r)
    c_u = (h - n) * u * (1.0 - u)  # h' = n + u (h - n), u = sigmoid(a_u)
    c_hp = jnp.concatenate([c_r, c_u, a_n * r], -1)

    def back(dh, step):  # the only sequential part: dh_{t-1} = dh_t u_t + (dh_t * c_t) W_h^T
        c, u_t = step
        return dh * u_t + (jnp.concatenate([dh, dh, dh], -1) * c) @ w_h.T, dh

    # The scan emits only dh per step (B x hidden); emitting the (B x 3 hidden) gate cotangents
    # from inside the loop made XLA copy the whole (H, B, 3 hidden) output every step.
    _, dh = jax.lax.scan(back, g, (c_hp, u), reverse=True)  # (H, ..., hidden)
    d_hp = jnp.concatenate([dh, dh, dh], -1) * c_hp  # cotangent of h @ w_h + b_h
    d_x = jnp.concatenate([dh * c_r, dh * c_u, dh * a_n], -1)  # of the input projection
    steps = tuple(range(d_x.ndim - 1))
    d_w_h = jnp.tensordot(h, d_hp, axes=(steps, steps))  # sum_t h_{t-1}^T d_hp_t
    d_x = jnp.moveaxis(d_x, 0, -2)  # (..., H, 3h), the layout of history
    d_w_in = jnp.tensordot(history, d_x, axes=(steps, steps))
    return d_w_in, jnp.sum(d_x, steps), d_w_h, jnp.sum(d_hp, steps), d_x @ w_in.T


gru_context.defvjp(_gru_fwd, _gru_bwd)


def input_weight_grad(x: jax.Array, d_x: jax.Array) -> jax.Array:
    """sum over samples and steps of x^T d_x: (B, H, F), (B, H, 3n) -> (F, 3n).

    Both operands have the samples and steps as rows, so a matmul library needs one of them
    transposed; XLA's CPU backend copies the first one into the transposed layout (profiled).
    The smaller one goes first here: for humanoid-dir the history (5120 x 394, 8 MB) was
    transposed twice per update, about 5.7 ms of thread time (docs/performance.md, change 9);
    the cotangent (5120 x 60) is 6.6x smaller. The result is the same sum, up to float rounding
    of its order."""
    if x.shape[-1] > d_x.shape[-1]:
        return jnp.einsum("btj,btf->jf", d_x, x).T
    return jnp.einsum("btf,btj->fj", x, d_x)


@jax.custom_vjp
def gru_context_native(
    w_in: jax.Array, b_in: jax.Array, w_h: jax.Array, b_h: jax.Array, history: jax.Array
) -> jax.Array:
    """`gru_context` with the recurrence in native kernels (mql.kernels): each pass, and the
    backward recurrence, is one call instead of H steps of small XLA kernels. The input
    projection and the weight gradients stay matmuls in XLA. Same equations; float results
    agree with `gru_context` to ~1e-6 (tanh/sigmoid approximations and summation order)."""
    x = history.reshape(-1, *history.shape[-2:])  # (B, H, F)
    h = kernels.gru_forward(x @ w_in + b_in, w_h, b_h)
    return h.reshape(*history.shape[:-2], h.shape[-1])


def _gru_native_fwd(w_in, b_in, w_h, b_h, history):
    x = history.reshape(-1, *history.shape[-2:])
    h, h_prev, gates = kernels.gru_forward_saved(x @ w_in + b_in, w_h, b_h)
    return h.reshape(*history.shape[:-2], h.shape[-1]), (w_in, w_h, history, h_prev, gates)


def _gru_native_bwd(res, g):
    w_in, w_h, history, h_prev, gates = res
    x = history.reshape(-1, *history.shape[-2:])  # (B, H, F)
    d_x, d_hp = kernels.gru_backward(g.reshape(-1, g.shape[-1]), h_prev, gates, w_h)  # (B, H, 3n)
    d_w_h = jnp.einsum("btk,btj->kj", h_prev, d_hp)  # sum_t h_{t-1}^T d_hp_t
    d_w_in = input_weight_grad(x, d_x)
    d_history = (d_x @ w_in.T).reshape(history.shape)
    return d_w_in, d_x.sum((0, 1)), d_w_h, d_hp.sum((0, 1)), d_history


gru_context_native.defvjp(_gru_native_fwd, _gru_native_bwd)


class MLP(nn.Module):
    """ReLU MLP with PyTorch-style initialisation U(±1/sqrt(fan_in)) and a linear output."""

    hidden: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        widths = (*self.hidden, self.out)
        for i, width in enumerate(widths):
            bound = 1.0 / float(x.shape[-1]) ** 0.5
            dense = nn.Dense(width, kernel_init=uniform(bound), bias_init=uniform(bound))
            x = dense(x)
            if i < len(widths) - 1:
                x = nn.relu(x)
        return x


class Actor(nn.Module):
    """u_θ(x, z): [obs, z] -> hidden -> act_dim -> tanh. An empty z (width 0) gives plain TD3."""

    act_dim: int
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array, z: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, z], -1)
        return jnp.tanh(MLP(self.hidden, self.act_dim, name="mlp")(x))


class Critic(nn.Module):
    """Twin heads q_φ1, q_φ2 over [obs, action, z]; returns (q1, q2), each of shape (...,)."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(
        self, obs: jax.Array, action: jax.Array, z: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        x = jnp.concatenate([obs, action, z], -1)
        q1 = MLP(self.hidden, 1, name="q1")(x)[..., 0]
        q2 = MLP(self.hidden, 1, name="q2")(x)[..., 0]
        return q1, q2
