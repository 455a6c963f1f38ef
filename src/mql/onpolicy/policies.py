"""Gaussian policies of the on-policy algorithms, with a state-independent learned log-std.

- `GaussianMLP`: mean = MLP(obs) (tanh hidden layers, ProMP's (64, 64) by default), used by
  MAML-TRPO and ProMP.
- `RecurrentGaussian` (RL2): a GRU or LSTM cell whose input at step t is
  (obs_t, a_{t-1}, r_{t-1}, done_{t-1}) (`mql.onpolicy.types.PolicyInputs`), a linear mean head
  on its output and, optionally, a linear value head (`value=True`). The carry starts at zero at
  the start of every trial and runs through the trial's episodes.

`sequence_outputs` runs the recurrent policy over a whole trial, `(T, N, ...)`, from the zero
carry; with `bptt_len` > 0 the gradient is truncated every `bptt_len` steps (the forward
values are those of the full sequence; only the backward pass is cut: truncated BPTT).

The log-density is that of the sampled (unclipped) action, summed over action dimensions (not
averaged, a pitfall of learn2learn noted in REFERENCE §4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from mql.onpolicy.types import PolicyInputs

__all__ = [
    "Cell",
    "GaussianMLP",
    "RecurrentGaussian",
    "entropy",
    "gaussian_kl",
    "log_prob",
    "policy_features",
    "sequence_outputs",
]

Cell = Literal["gru", "lstm"]
CELLS: tuple[str, ...] = ("gru", "lstm")
_LOG_2PI = math.log(2.0 * math.pi)


def log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """log N(action; mean, exp(log_std)^2), summed over the last axis."""
    z = (action - mean) * jnp.exp(-log_std)
    return -0.5 * jnp.sum(z * z + 2.0 * log_std + _LOG_2PI, axis=-1)


def entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of the diagonal Gaussian, summed over action dimensions."""
    return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)


def gaussian_kl(
    mean_p: jax.Array, log_std_p: jax.Array, mean_q: jax.Array, log_std_q: jax.Array
) -> jax.Array:
    """KL(p || q) of diagonal Gaussians, summed over the last axis."""
    var_p, var_q = jnp.exp(2.0 * log_std_p), jnp.exp(2.0 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2.0 * var_q) - 0.5
    return jnp.sum(kl, axis=-1)


class GaussianMLP(nn.Module):
    """mean = MLP(obs); log_std a learned vector (see the module docstring)."""

    act_dim: int
    hidden: Sequence[int] = (64, 64)
    init_std: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = obs
        for width in self.hidden:
            x = jnp.tanh(nn.Dense(width)(x))
        mean = nn.Dense(self.act_dim)(x)
        log_std = self.param(
            "log_std", nn.initializers.constant(math.log(self.init_std)), (self.act_dim,)
        )
        return mean, jnp.broadcast_to(log_std, mean.shape)


def policy_features(inputs: PolicyInputs) -> jax.Array:
    """RL2's cell input: obs, previous action, previous reward, previous done, concatenated."""
    return jnp.concatenate(
        [
            inputs.obs,
            inputs.prev_action,
            inputs.prev_reward[..., None],
            inputs.prev_done[..., None],
        ],
        axis=-1,
    )


class RecurrentGaussian(nn.Module):
    """One step of RL2's policy: (carry, inputs) -> (carry, (mean, log_std, value))."""

    act_dim: int
    hidden: int = 64
    cell: Cell = "gru"
    init_std: float = 1.0
    value: bool = False

    def setup(self) -> None:
        if self.cell == "gru":
            self.rnn = nn.GRUCell(features=self.hidden)
        elif self.cell == "lstm":
            self.rnn = nn.OptimizedLSTMCell(features=self.hidden)
        else:
            raise ValueError(f"unknown recurrent cell {self.cell!r}; known: {', '.join(CELLS)}")
        self.mean_head = nn.Dense(self.act_dim)
        self.value_head = nn.Dense(1) if self.value else None
        self.log_std = self.param(
            "log_std", nn.initializers.constant(math.log(self.init_std)), (self.act_dim,)
        )

    def initial_carry(self, n: int) -> Any:
        """The zero carry of `n` slots (the start of a trial)."""
        zeros = jnp.zeros((n, self.hidden), jnp.float32)
        return (zeros, zeros) if self.cell == "lstm" else zeros

    def __call__(
        self, carry: Any, inputs: PolicyInputs
    ) -> tuple[Any, tuple[jax.Array, jax.Array, jax.Array]]:
        carry, h = self.rnn(carry, policy_features(inputs))
        mean = self.mean_head(h)
        log_std = jnp.broadcast_to(self.log_std, mean.shape)
        value = (
            self.value_head(h)[..., 0]
            if self.value_head is not None
            else jnp.zeros(mean.shape[:-1])
        )
        return carry, (mean, log_std, value)


def sequence_outputs(
    module: RecurrentGaussian, params: Any, inputs: PolicyInputs, bptt_len: int = 0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(mean, log_std, value), each `(T, N, ...)`, of the recurrent policy over whole trials
    from the zero carry; gradients cut every `bptt_len` steps if `bptt_len` > 0."""
    t_len, n = inputs.obs.shape[:2]
    carry0 = module.apply(params, n, method=RecurrentGaussian.initial_carry)

    def step(carry: Any, x: tuple[PolicyInputs, jax.Array]) -> tuple[Any, Any]:
        inp, cut = x
        carry = jax.tree_util.tree_map(lambda c: jnp.where(cut, jax.lax.stop_gradient(c), c), carry)
        return module.apply(params, carry, inp)

    t = jnp.arange(t_len)
    cut = (t % bptt_len == 0) & (t > 0) if bptt_len > 0 else jnp.zeros(t_len, bool)
    _, outputs = jax.lax.scan(step, carry0, (inputs, cut))
    return outputs
