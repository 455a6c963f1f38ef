"""PEARL's networks and the Gaussian maths of its encoder and policy (oyster's rlkit modules).

Initialisation as in oyster's rlkit `Mlp`: hidden weights U(±1/sqrt(w)) where w is the layer's
OUTPUT width (rlkit's `fanin_init` reads `weight.size(0)`, which for a torch Linear is the output
size), hidden biases 0.1, last layer weights and biases U(±3e-3) (policy heads: U(±1e-3)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from mql.nn import uniform

__all__ = [
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "RlkitMLP",
    "TanhGaussianPolicy",
    "Trunk",
    "kl_to_standard_normal",
    "product_of_gaussians",
    "tanh_gaussian",
]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
VAR_MIN = 1e-7  # oyster clamps factor variances below at 1e-7 before the product
TANH_EPS = 1e-6  # oyster's TanhNormal epsilon in log(1 - tanh² + eps)


def _rlkit_fanin(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """rlkit's `fanin_init` on a torch (out, in) weight: bound 1/sqrt(out). Flax kernels are
    (in, out), so the bound reads shape[-1]."""
    bound = 1.0 / math.sqrt(shape[-1])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class Trunk(nn.Module):
    """ReLU hidden layers with rlkit's initialisation."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            dense = nn.Dense(
                width, kernel_init=_rlkit_fanin, bias_init=nn.initializers.constant(0.1)
            )
            x = nn.relu(dense(x))
        return x


class RlkitMLP(nn.Module):
    """rlkit `Mlp`/`FlattenMlp`: trunk, then a linear output layer initialised U(±init_w)."""

    hidden: Sequence[int]
    out: int
    init_w: float = 3e-3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = Trunk(self.hidden, name="trunk")(x)
        last = nn.Dense(self.out, kernel_init=uniform(self.init_w), bias_init=uniform(self.init_w))
        return last(h)


class TanhGaussianPolicy(nn.Module):
    """Trunk over [s, z], then heads for the Gaussian mean and log_std (clipped to [-20, 2])."""

    act_dim: int
    hidden: Sequence[int]
    init_w: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = Trunk(self.hidden, name="trunk")(x)
        init = uniform(self.init_w)
        mean = nn.Dense(self.act_dim, kernel_init=init, bias_init=init, name="mean")(h)
        log_std = nn.Dense(self.act_dim, kernel_init=init, bias_init=init, name="log_std")(h)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


# -- pure maths ----------------------------------------------------------------------------------
def product_of_gaussians(
    mu: jax.Array, var: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Product of the Gaussian factors N(mu_n, var_n) along axis -2 (eq. 4).

    `mu`, `var`: (..., N, L); `mask` (..., N) drops factors (0) from the product (padding).
    Returns (mean, var) of shape (..., L): var = 1 / Σ 1/var_n, mean = var · Σ mu_n / var_n.
    Factor variances are clamped below at 1e-7, as in oyster. Callers keep at least one factor
    unmasked (with none, the precision is 0 and the variance infinite).
    """
    precision = 1.0 / jnp.maximum(var, VAR_MIN)
    if mask is not None:
        precision = precision * mask[..., None]
    post_var = 1.0 / jnp.sum(precision, axis=-2)
    post_mu = post_var * jnp.sum(mu * precision, axis=-2)
    return post_mu, post_var


def kl_to_standard_normal(mu: jax.Array, var: jax.Array) -> jax.Array:
    """Elementwise KL(N(mu, var) || N(0, 1)) = 0.5 (var + mu² - 1 - ln var); callers sum."""
    return 0.5 * (var + jnp.square(mu) - 1.0 - jnp.log(var))


def tanh_gaussian(
    mean: jax.Array, log_std: jax.Array, eps: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Reparameterised sample of tanh(N(mean, std²)) from standard normal `eps`.

    Returns (action, log_prob summed over action dims, pre_tanh). log_prob is oyster's:
    log N(pre; mean, std) - log(1 - tanh(pre)² + 1e-6).
    """
    pre = mean + jnp.exp(log_std) * eps
    action = jnp.tanh(pre)
    normal_logp = -0.5 * jnp.square(eps) - log_std - 0.5 * math.log(2.0 * math.pi)
    logp = jnp.sum(normal_logp - jnp.log(1.0 - jnp.square(action) + TANH_EPS), axis=-1)
    return action, logp, pre
