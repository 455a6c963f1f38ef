"""PEARL's learner: context encoder, product of Gaussians, KL, and SAC with a V network.

Rakelly et al. 2019, "Efficient Off-Policy Meta-Reinforcement Learning via Probabilistic Context
Variables", as released in "oyster" (REFERENCE §3). Paper equations:

- eq. 4 (posterior): q(z | c_1:N) ∝ Π_n Ψ(z | c_n), each factor Ψ = N(μ_n, σ²_n) from the encoder
  MLP (μ and softplus(σ²) per transition); the product is Gaussian with precision Σ 1/σ²_n and
  mean σ² Σ μ_n/σ²_n (`product_of_gaussians`).
- eq. 3 / 5 (objective): critic loss (eq. 6 below) + β KL(q(z|c) || N(0, I)) trains the encoder;
  the actor and V losses see z through `stop_gradient` (the encoder gets no gradient from them).
- eq. 6 (critic): L_Q = E[(Q(s, a, z) - (r + γ V̄(s', z)))²], here with two Q networks and the
  target V network V̄ (Polyak τ), rewards multiplied by `reward_scale`.
- eq. 7 (actor): L_π = E[log π(ã | s, z) - min_i Q_i(s, ã, z)] with ã reparameterised through a
  tanh-squashed Gaussian; plus oyster's regulariser 1e-3 (mean² + log_std²).
- V (SAC 2018): L_V = E[(V(s, z) - (min_i Q_i(s, ã, z) - log π(ã | s, z)))²].

One gradient step, in oyster's order (`PEARLLearner._update`):
1. z ~ q(z | c) per task by reparameterisation; L_Q + kl_lambda · KL steps the encoder and Q1, Q2.
2. With the UPDATED Q networks and one policy sample ã (pre-update policy): L_V steps V, then
   the target V moves by Polyak τ; L_π steps the policy.
Entropy weight fixed at 1 (no automatic tuning). Adam for every network (one Adam per network
group; Adam is per-parameter, so grouping does not change the numbers).

Networks and the Gaussian maths (product of factors, KL, tanh-Gaussian) are in
`mql.algos.pearl.networks`.

Shapes: a meta-batch holds T tasks; RL arrays are (T, B, ...), context (T, C, context_dim).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mql.algos.pearl.networks import (
    RlkitMLP,
    TanhGaussianPolicy,
    kl_to_standard_normal,
    product_of_gaussians,
    tanh_gaussian,
)

Params = Any


@dataclass(frozen=True)
class PEARLSpec:
    """Static settings of the learner (they shape the compiled computation)."""

    obs_dim: int
    act_dim: int
    context_dim: int
    latent_dim: int = 5
    hidden: tuple[int, ...] = (300, 300, 300)
    encoder_hidden: tuple[int, ...] = (200, 200, 200)
    gamma: float = 0.99
    tau: float = 0.005
    reward_scale: float = 5.0
    kl_lambda: float = 0.1
    policy_mean_reg_weight: float = 1e-3
    policy_std_reg_weight: float = 1e-3
    policy_pre_activation_weight: float = 0.0


class RLBatch(NamedTuple):
    """A meta-batch of RL transitions, (T, B, ...) arrays (leading K when fused)."""

    obs: Any
    action: Any
    reward: Any  # (T, B) environment (dense) reward, unscaled
    next_obs: Any
    done: Any  # (T, B) 1.0 where terminated


class PEARLState(flax.struct.PyTreeNode):
    """Everything a gradient step changes."""

    critic: Params  # {"encoder", "q1", "q2"}: stepped together by L_Q + kl_lambda KL
    v: Params
    v_target: Params
    policy: Params
    critic_opt: optax.OptState
    v_opt: optax.OptState
    policy_opt: optax.OptState
    key: jax.Array
    updates: jax.Array  # int32 scalar


class PEARLLearner:
    """The networks and pure functions of PEARL; state is passed explicitly."""

    def __init__(self, spec: PEARLSpec, lr: float) -> None:
        self.spec = spec
        self.encoder = RlkitMLP(spec.encoder_hidden, 2 * spec.latent_dim)
        self.qf = RlkitMLP(spec.hidden, 1)
        self.vf = RlkitMLP(spec.hidden, 1)
        self.pi = TanhGaussianPolicy(spec.act_dim, spec.hidden)
        self.tx = optax.adam(lr)
        self.init = jax.jit(self._init)
        self.update_many = jax.jit(self._update_many)
        self.posterior = jax.jit(self._posterior)
        self.policy_params = jax.jit(self._policy_params)

    def _init(self, key: jax.Array) -> PEARLState:
        """Fresh parameters, targets (target V = V) and Adam states."""
        s = self.spec
        k_enc, k_q1, k_q2, k_v, k_pi, key = jax.random.split(key, 6)
        obs = jnp.zeros((1, s.obs_dim))
        q_in = jnp.zeros((1, s.obs_dim + s.act_dim + s.latent_dim))
        critic = {
            "encoder": self.encoder.init(k_enc, jnp.zeros((1, s.context_dim))),
            "q1": self.qf.init(k_q1, q_in),
            "q2": self.qf.init(k_q2, q_in),
        }
        z = jnp.zeros((1, s.latent_dim))
        v = self.vf.init(k_v, jnp.concatenate([obs, z], -1))
        policy = self.pi.init(k_pi, jnp.concatenate([obs, z], -1))
        return PEARLState(
            critic=critic,
            v=v,
            v_target=v,
            policy=policy,
            critic_opt=self.tx.init(critic),
            v_opt=self.tx.init(v),
            policy_opt=self.tx.init(policy),
            key=key,
            updates=jnp.zeros((), jnp.int32),
        )

    # -- inference -----------------------------------------------------------------------------
    def factors(self, encoder: Params, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-transition Gaussian factors: (mu, softplus variance), each (..., N, L)."""
        out = self.encoder.apply(encoder, context)
        L = self.spec.latent_dim
        return out[..., :L], jax.nn.softplus(out[..., L:])

    def _posterior(
        self, encoder: Params, context: jax.Array, mask: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """q(z | c) for a context (..., N, context_dim): (mean, var), each (..., L)."""
        mu, var = self.factors(encoder, context)
        return product_of_gaussians(mu, var, mask)

    def _policy_params(
        self, policy: Params, obs: jax.Array, z: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(mean, log_std) of the pre-tanh Gaussian for obs (..., obs_dim) and z (..., L)."""
        return self.pi.apply(policy, jnp.concatenate([obs, z], -1))

    def q_values(self, critic: Params, obs, action, z) -> tuple[jax.Array, jax.Array]:
        x = jnp.concatenate([obs, action, z], -1)
        return self.qf.apply(critic["q1"], x)[..., 0], self.qf.apply(critic["q2"], x)[..., 0]

    def value(self, v: Params, obs, z) -> jax.Array:
        return self.vf.apply(v, jnp.concatenate([obs, z], -1))[..., 0]

    # -- losses (pure) -------------------------------------------------------------------------
    def critic_loss(
        self,
        critic: Params,
        v_target: Params,
        batch: RLBatch,
        context: jax.Array,
        eps_z: jax.Array,
    ) -> tuple[jax.Array, tuple[jax.Array, dict[str, jax.Array]]]:
        """L_Q (eq. 6, twin Q) + kl_lambda · Σ_tasks KL(q(z|c) || N(0, I)) (eq. 3).

        The only loss the encoder learns from. Returns (loss, (z, metrics)); z (T, L) is the
        posterior sample every other loss of this step uses (through stop_gradient).
        """
        s = self.spec
        mu, var = self._posterior(critic["encoder"], context)  # (T, L)
        z = mu + jnp.sqrt(var) * eps_z
        zb = jnp.broadcast_to(z[:, None, :], (*batch.obs.shape[:2], s.latent_dim))
        q1, q2 = self.q_values(critic, batch.obs, batch.action, zb)
        next_v = self.value(v_target, batch.next_obs, zb)
        target = s.reward_scale * batch.reward + (1.0 - batch.done) * s.gamma * next_v
        target = jax.lax.stop_gradient(target)
        qf_loss = jnp.mean(jnp.square(q1 - target)) + jnp.mean(jnp.square(q2 - target))
        kl = jnp.sum(kl_to_standard_normal(mu, var))
        loss = qf_loss + s.kl_lambda * kl
        metrics = {
            "qf_loss": qf_loss,
            "kl": kl,
            "q1": jnp.mean(q1),
            "z_mean_abs": jnp.mean(jnp.abs(mu)),
            "z_var": jnp.mean(var),
        }
        return loss, (z, metrics)

    def policy_sample(self, policy: Params, obs, z, eps):
        """(action, log_prob, mean, log_std, pre_tanh) of the reparameterised policy sample."""
        mean, log_std = self._policy_params(policy, obs, z)
        action, logp, pre = tanh_gaussian(mean, log_std, eps)
        return action, logp, mean, log_std, pre

    def value_loss(
        self, v: Params, critic: Params, policy: Params, obs, z, eps
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """L_V = mean((V(s, z) - sg[min Q(s, ã, z) - log π(ã | s, z)])²), z given (no gradient)."""
        action, logp, *_ = self.policy_sample(policy, obs, z, eps)
        q1, q2 = self.q_values(critic, obs, action, z)
        target = jax.lax.stop_gradient(jnp.minimum(q1, q2) - logp)
        v_pred = self.value(v, obs, z)
        loss = jnp.mean(jnp.square(v_pred - target))
        return loss, {"vf_loss": loss, "v": jnp.mean(v_pred)}

    def policy_loss(
        self, policy: Params, critic: Params, obs, z, eps
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """L_π = mean(log π(ã|s,z) - min Q(s, ã, z)) + oyster's regulariser (eq. 7)."""
        s = self.spec
        action, logp, mean, log_std, pre = self.policy_sample(policy, obs, z, eps)
        q1, q2 = self.q_values(critic, obs, action, z)
        loss = jnp.mean(logp - jnp.minimum(q1, q2))
        reg = (
            s.policy_mean_reg_weight * jnp.mean(jnp.square(mean))
            + s.policy_std_reg_weight * jnp.mean(jnp.square(log_std))
            + s.policy_pre_activation_weight * jnp.mean(jnp.sum(jnp.square(pre), -1))
        )
        loss = loss + reg
        return loss, {"policy_loss": loss, "log_pi": jnp.mean(logp)}

    # -- one gradient step ---------------------------------------------------------------------
    def _update(
        self, state: PEARLState, batch: RLBatch, context: jax.Array
    ) -> tuple[PEARLState, dict[str, jax.Array]]:
        s = self.spec
        key, k_z, k_pi = jax.random.split(state.key, 3)
        T = context.shape[0]
        eps_z = jax.random.normal(k_z, (T, s.latent_dim))
        eps_pi = jax.random.normal(k_pi, (*batch.obs.shape[:2], s.act_dim))
        # 1. encoder + Q1 + Q2
        grads, (z, metrics) = jax.grad(self.critic_loss, has_aux=True)(
            state.critic, state.v_target, batch, context, eps_z
        )
        upd, critic_opt = self.tx.update(grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, upd)
        # 2. V (with the updated Q), target V, policy; z enters without gradient
        zb = jax.lax.stop_gradient(
            jnp.broadcast_to(z[:, None, :], (*batch.obs.shape[:2], z.shape[-1]))
        )
        g_v, m_v = jax.grad(self.value_loss, has_aux=True)(
            state.v, critic, state.policy, batch.obs, zb, eps_pi
        )
        upd, v_opt = self.tx.update(g_v, state.v_opt, state.v)
        v = optax.apply_updates(state.v, upd)
        v_target = jax.tree_util.tree_map(
            lambda t, p: (1.0 - s.tau) * t + s.tau * p, state.v_target, v
        )
        g_pi, m_pi = jax.grad(self.policy_loss, has_aux=True)(
            state.policy, critic, batch.obs, zb, eps_pi
        )
        upd, policy_opt = self.tx.update(g_pi, state.policy_opt, state.policy)
        policy = optax.apply_updates(state.policy, upd)
        new_state = PEARLState(
            critic=critic,
            v=v,
            v_target=v_target,
            policy=policy,
            critic_opt=critic_opt,
            v_opt=v_opt,
            policy_opt=policy_opt,
            key=key,
            updates=state.updates + 1,
        )
        return new_state, {**metrics, **m_v, **m_pi}

    def _update_many(
        self, state: PEARLState, batches: RLBatch, contexts: jax.Array
    ) -> tuple[PEARLState, dict[str, jax.Array]]:
        """K gradient steps in one compiled call; inputs carry a leading K axis. Returns the
        metrics averaged over the K steps."""

        def body(st: PEARLState, xs: tuple[RLBatch, jax.Array]):
            return self._update(st, xs[0], xs[1])

        state, metrics = jax.lax.scan(body, state, (batches, contexts))
        return state, {k: jnp.mean(v) for k, v in metrics.items()}


@functools.cache
def shared_learner(spec: PEARLSpec, lr: float) -> PEARLLearner:
    """One learner per (spec, lr) in a process. A learner holds no state, only networks and
    compiled functions, so PEARL objects of the same shapes (a run and its resumed or evaluated
    copy, the tests' runs) share their compilations instead of recompiling."""
    return PEARLLearner(spec, lr)
