"""RL2's sampling step in NumPy: the recurrent Gaussian policy's cell, mean head and Gaussian
noise for all of the sampler's slots, one call per time step.

`NumpyRecurrentStep(params, cell, rng)` reads the parameters of a `RecurrentGaussian`
(`mql.onpolicy.policies`) and computes what `module.apply` does, in float32:

- GRU (flax's `GRUCell`): r = sigmoid(W_ir x + b_ir + W_hr h), z = sigmoid(W_iz x + b_iz + W_hz h),
  n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h;
- LSTM (flax's `OptimizedLSTMCell`, carry (c, h)): i, f, o = sigmoid(W_i* x + W_h* h + b_h*),
  g = tanh(W_ig x + W_hg h + b_hg), c' = f c + i g, h' = o tanh(c');

then mean = W_m h' + b_m, action = mean + exp(log_std) * eps with eps ~ N(0, I) from `rng`, and
log pi(action) = -0.5 |eps|^2 - sum(log_std) - (d / 2) log(2 pi), the density of the sampled
action (`policies.log_prob`, whose z is eps). The gate products of each cell are fused into one
input and one recurrent matrix product.

Why: at RL2's 100 slots the jit-compiled step costs about 0.2 ms a call in XLA's per-call work,
this one about 0.1 ms, and the sampler waits for it at every time step (docs/performance.md,
"On-policy sampler"). Its values agree with the module's to float32 rounding (not bit for bit:
XLA and NumPy sum in different orders; tests/test_onpolicy_numpy_step.py), and the PPO update
recomputes every log-density with the module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mql.onpolicy.types import PolicyInputs

__all__ = ["NumpyRecurrentStep", "features"]

_GATES = {"gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}


def features(inputs: PolicyInputs) -> np.ndarray:
    """The cell's input (`policies.policy_features` in NumPy): obs, previous action, previous
    reward and previous done of every slot, concatenated, float32."""
    return np.concatenate(
        [inputs.obs, inputs.prev_action, inputs.prev_reward[:, None], inputs.prev_done[:, None]],
        axis=1,
        dtype=np.float32,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """sigmoid(x) = (1 + tanh(x / 2)) / 2, in place."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


class NumpyRecurrentStep:
    """One sampling step of a `RecurrentGaussian` (see the module docstring); a `StepFn`."""

    def __init__(self, params: Any, cell: str, rng: np.random.Generator) -> None:
        if cell not in _GATES:
            raise ValueError(f"unknown recurrent cell {cell!r}; known: {', '.join(_GATES)}")
        p = params["params"]
        rnn = {k: {n: np.asarray(v, np.float32) for n, v in d.items()} for k, d in p["rnn"].items()}
        gates = _GATES[cell]
        self.w_in = np.concatenate([rnn["i" + g]["kernel"] for g in gates], axis=1)
        self.w_h = np.concatenate([rnn["h" + g]["kernel"] for g in gates], axis=1)
        hidden = self.w_h.shape[0]
        # every bias but the GRU's b_hn (inside r * (...)) is added to the input products
        side = "i" if cell == "gru" else "h"  # flax: GRU biases on x, LSTM biases on h
        self.bias = np.concatenate([rnn[side + g]["bias"] for g in gates])
        self.b_hn = rnn["hn"]["bias"] if cell == "gru" else None
        self.cell, self.hidden, self.rng = cell, hidden, rng
        self.w_mean = np.asarray(p["mean_head"]["kernel"], np.float32)
        self.b_mean = np.asarray(p["mean_head"]["bias"], np.float32)
        log_std = np.asarray(p["log_std"], np.float32)
        self.std = np.exp(log_std)
        self.log_norm = np.float32(-log_std.sum() - 0.5 * log_std.size * math.log(2.0 * math.pi))

    def initial_carry(self, n: int) -> Any:
        """The zero carry of `n` slots (`RecurrentGaussian.initial_carry`)."""
        zeros = np.zeros((n, self.hidden), np.float32)
        return (zeros, zeros.copy()) if self.cell == "lstm" else zeros

    def cell_step(self, carry: Any, inputs: PolicyInputs) -> tuple[Any, np.ndarray]:
        """(new carry, cell output h') for `inputs` of every slot."""
        x = features(inputs)
        hid = self.hidden
        pre = x @ self.w_in
        pre += self.bias
        if self.cell == "gru":
            h = carry
            rec = h @ self.w_h
            rz = _sigmoid(pre[:, : 2 * hid] + rec[:, : 2 * hid])
            n = rec[:, 2 * hid :] + self.b_hn
            n *= rz[:, :hid]
            n += pre[:, 2 * hid :]
            np.tanh(n, out=n)
            new_h = h - n
            new_h *= rz[:, hid:]
            new_h += n
            return new_h, new_h
        c, h = carry
        pre += h @ self.w_h
        i, f = _sigmoid(pre[:, :hid]), _sigmoid(pre[:, hid : 2 * hid])
        g, o = np.tanh(pre[:, 2 * hid : 3 * hid]), _sigmoid(pre[:, 3 * hid :])
        new_c = f * c
        new_c += i * g
        new_h = np.tanh(new_c)
        new_h *= o
        return (new_c, new_h), new_h

    def __call__(self, carry: Any, inputs: PolicyInputs) -> tuple[np.ndarray, np.ndarray, Any]:
        """(actions, log-densities, new carry) of every slot."""
        carry, h = self.cell_step(carry, inputs)
        mean = h @ self.w_mean
        mean += self.b_mean
        eps = self.rng.standard_normal(mean.shape, dtype=np.float32)
        action = eps * self.std
        action += mean
        log_prob = np.einsum("ij,ij->i", eps, eps)
        log_prob *= -0.5
        log_prob += self.log_norm
        return action, log_prob, carry
