"""TD3 with a recurrent context: pure losses and one jit-compiled update (paper eq. 15, 18, 19).

One update step serves all three uses in MQL:

- meta-training (eq. 15): weights = 1, proximal coefficient 0;
- adaptation on new-task data (eq. 18): weights = 1, proximal coefficient λ;
- propensity-weighted adaptation on meta-training data (eq. 19): weights = β, coefficient λ.

The proximal term λ/2 ||θ - θ_meta||² is applied to the actor's parameters in the actor loss
and to the critic's parameters in the critic loss (REFERENCE §2; the paper writes it for θ and
notes φ is updated the same way). Per-sample weights multiply the per-sample critic loss and the
per-sample actor objective.

TD3 details as in the authors' code (REFERENCE §2): target policy smoothing with N(0, σ) noise
clipped to ±`noise_clip`, target action clipped to [-1, 1], clipped double-Q target, critic loss
= MSE(q1, y) + MSE(q2, y), actor loss = -q1, actor and both targets updated every
`policy_freq` critic updates (Polyak τ), Adam, no gradient clipping.

Context modes (`context_mode`):
- "separate" (released code, default): the actor and the critic each own a GRU (targets too);
  the critic's GRU is trained by the TD loss only, the actor's by the actor loss only.
- "shared" (the paper's single z): one GRU, owned by the critic and trained by the TD loss; the
  actor reads its output through `stop_gradient`.
- "none": plain TD3, no context (the paper's "TD3" curve).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mql.offpolicy.networks import Actor, ContextGRU, Critic
from mql.offpolicy.replay import Batch, PackedBatch, unpack
from mql.offpolicy.types import ContextMode, GruKernel

Params = Any


@dataclass(frozen=True)
class TD3Spec:
    """Static settings of the learner (they shape the compiled computation)."""

    obs_dim: int
    act_dim: int
    history_len: int
    hidden: tuple[int, ...] = (300, 300)
    context_dim: int = 20
    context_mode: ContextMode = "separate"
    gamma: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    gru_kernel: GruKernel = "xla"  # how the context GRU runs (mql.offpolicy.networks, mql.kernels)

    @property
    def feat_dim(self) -> int:
        """Width of one history row: (action, reward, observation)."""
        return self.act_dim + 1 + self.obs_dim


class TD3State(flax.struct.PyTreeNode):
    """Everything an update changes: parameters, targets, optimiser states, RNG, counter."""

    actor: Params
    critic: Params
    actor_target: Params
    critic_target: Params
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    key: jax.Array
    updates: jax.Array  # int32 scalar: critic updates so far


class Anchor(NamedTuple):
    """θ_meta and φ_meta of the proximal term, and its coefficient λ."""

    actor: Params
    critic: Params
    coef: jax.Array


def proximal(params: Params, anchor: Params, coef: jax.Array) -> jax.Array:
    """λ/2 ||θ - θ_meta||² (eq. 18, 19); zero, with zero gradient, at the anchor."""
    sq = jax.tree_util.tree_map(lambda p, a: jnp.sum(jnp.square(p - a)), params, anchor)
    return 0.5 * coef * sum(jax.tree_util.tree_leaves(sq))


def make_optimizer(lr: float) -> optax.GradientTransformation:
    """Adam with the learning rate kept in the state, so adaptation can change it."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr)


class TD3:
    """The networks and pure functions of TD3-with-context; state is passed explicitly."""

    def __init__(self, spec: TD3Spec) -> None:
        self.spec = spec
        self.actor_net = Actor(spec.act_dim, spec.hidden)
        self.critic_net = Critic(spec.hidden)
        self.gru = (
            ContextGRU(spec.context_dim, spec.gru_kernel) if spec.context_mode != "none" else None
        )
        self.tx = make_optimizer(1e-3)  # learning rate set per state by `fresh_optimizers`
        self.update_many = jax.jit(self.scan_updates)
        self.act = jax.jit(self._act)
        self.actor_features = jax.jit(self._actor_context)

    # -- parameters -------------------------------------------------------------------------
    def init(self, key: jax.Array, lr: float) -> TD3State:
        s = self.spec
        k_actor, k_critic, k_actx, k_crctx, key = jax.random.split(key, 5)
        obs = jnp.zeros((1, s.obs_dim))
        act = jnp.zeros((1, s.act_dim))
        z = jnp.zeros((1, s.context_dim if self.gru is not None else 0))
        hist = jnp.zeros((1, s.history_len, s.feat_dim))
        actor = {"mlp": self.actor_net.init(k_actor, obs, z)}
        critic = {"mlp": self.critic_net.init(k_critic, obs, act, z)}
        if self.gru is not None:
            critic["gru"] = self.gru.init(k_crctx, hist)
            if s.context_mode == "separate":
                actor["gru"] = self.gru.init(k_actx, hist)
        return self.fresh_optimizers(
            TD3State(
                actor=actor,
                critic=critic,
                actor_target=actor,
                critic_target=critic,
                actor_opt=None,
                critic_opt=None,
                key=key,
                updates=jnp.zeros((), jnp.int32),
            ),
            lr,
        )

    def fresh_optimizers(self, state: TD3State, lr: float) -> TD3State:
        """New Adam states with learning rate `lr` (as at the start of adaptation)."""
        actor_opt = self.tx.init(state.actor)
        critic_opt = self.tx.init(state.critic)
        actor_opt.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        critic_opt.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        return state.replace(actor_opt=actor_opt, critic_opt=critic_opt)

    # -- context -------------------------------------------------------------------------------
    def _critic_context(self, critic: Params, history: jax.Array) -> jax.Array:
        if self.gru is None:
            return jnp.zeros((*history.shape[:-2], 0), history.dtype)
        return self.gru.apply(critic["gru"], history)

    def _actor_context(self, actor: Params, critic: Params, history: jax.Array) -> jax.Array:
        if self.spec.context_mode == "separate":
            return self.gru.apply(actor["gru"], history)
        return jax.lax.stop_gradient(self._critic_context(critic, history))

    def _policy(self, actor: Params, critic: Params, obs: jax.Array, history: jax.Array):
        z = self._actor_context(actor, critic, history)
        return self.actor_net.apply(actor["mlp"], obs, z)

    def _act(self, actor: Params, critic: Params, obs: jax.Array, history: jax.Array):
        """Deterministic action for one observation (obs_dim,) and its history (H, feat)."""
        return self._policy(actor, critic, obs[None], history[None])[0]

    # -- losses (pure) -------------------------------------------------------------------------
    def critic_loss(
        self,
        critic: Params,
        state: TD3State,
        batch: Batch,
        weights: jax.Array,
        anchor: Anchor,
        key: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Weighted clipped double-Q TD loss (eq. 7, 15) plus the proximal term on φ."""
        s = self.spec
        noise = jnp.clip(
            s.policy_noise * jax.random.normal(key, batch.action.shape), -s.noise_clip, s.noise_clip
        )
        next_action = self._policy(
            state.actor_target, state.critic_target, batch.next_obs, batch.next_history
        )
        next_action = jnp.clip(next_action + noise, -1.0, 1.0)
        next_z = self._critic_context(state.critic_target, batch.next_history)
        tq1, tq2 = self.critic_net.apply(
            state.critic_target["mlp"], batch.next_obs, next_action, next_z
        )
        target = batch.reward + s.gamma * (1.0 - batch.done) * jnp.minimum(tq1, tq2)
        target = jax.lax.stop_gradient(target)
        z = self._critic_context(critic, batch.history)
        q1, q2 = self.critic_net.apply(critic["mlp"], batch.obs, batch.action, z)
        td = weights * (jnp.square(q1 - target) + jnp.square(q2 - target))
        loss = jnp.mean(td) + proximal(critic, anchor.critic, anchor.coef)
        return loss, {"critic_loss": loss, "q1": jnp.mean(q1), "q2": jnp.mean(q2)}

    def actor_loss(
        self, actor: Params, critic: Params, batch: Batch, weights: jax.Array, anchor: Anchor
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """-E[w q1(x, u_θ(x, z), z)] plus the proximal term on θ (eq. 6, 18, 19)."""
        action = self._policy(actor, critic, batch.obs, batch.history)
        z = self._critic_context(critic, batch.history)
        q1, _ = self.critic_net.apply(critic["mlp"], batch.obs, action, z)
        loss = -jnp.mean(weights * q1) + proximal(actor, anchor.actor, anchor.coef)
        return loss, {"actor_loss": loss}

    # -- one update ----------------------------------------------------------------------------
    def actor_step(
        self, st: TD3State, batch: Batch, weights: jax.Array, anchor: Anchor
    ) -> tuple[TD3State, jax.Array]:
        """The delayed step: one Adam step on the actor loss, then Polyak averaging of both
        targets (every `policy_freq` critic updates); returns the new state and the loss."""
        g, m = jax.grad(self.actor_loss, has_aux=True)(st.actor, st.critic, batch, weights, anchor)
        u, actor_opt = self.tx.update(g, st.actor_opt, st.actor)
        actor = optax.apply_updates(st.actor, u)
        tau = self.spec.tau
        soft = lambda t, p: (1.0 - tau) * t + tau * p  # noqa: E731
        return st.replace(
            actor=actor,
            actor_opt=actor_opt,
            actor_target=jax.tree_util.tree_map(soft, st.actor_target, actor),
            critic_target=jax.tree_util.tree_map(soft, st.critic_target, st.critic),
        ), m["actor_loss"]

    def update(
        self, state: TD3State, batch: Batch, weights: jax.Array, anchor: Anchor
    ) -> tuple[TD3State, dict[str, jax.Array]]:
        """One update, pure and not compiled (`update_many` compiles K of them): a critic step
        on the weighted TD loss, then every `policy_freq` critic updates the actor step."""
        key, k_noise = jax.random.split(state.key)
        grads, metrics = jax.grad(self.critic_loss, has_aux=True)(
            state.critic, state, batch, weights, anchor, k_noise
        )
        upd, critic_opt = self.tx.update(grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, upd)
        state = state.replace(critic=critic, critic_opt=critic_opt, key=key)

        def actor_step(st: TD3State) -> tuple[TD3State, jax.Array]:
            return self.actor_step(st, batch, weights, anchor)

        def skip(st: TD3State) -> tuple[TD3State, jax.Array]:
            return st, jnp.asarray(jnp.nan, jnp.float32)

        do_actor = state.updates % self.spec.policy_freq == 0
        state, actor_loss = jax.lax.cond(do_actor, actor_step, skip, state)
        state = state.replace(updates=state.updates + 1)
        metrics["actor_loss"] = actor_loss
        return state, metrics

    def scan_updates(
        self,
        state: TD3State,
        batches: Batch | PackedBatch,
        weights: jax.Array,
        anchor: Anchor,
    ) -> tuple[TD3State, dict[str, jax.Array]]:
        """K updates in one `lax.scan` (`update_many` is this, jit-compiled); `batches` and
        `weights` carry a leading K axis.

        `batches` may be a `PackedBatch` (what `MQL` sends: half the bytes); each update's
        minibatch is unpacked inside the loop body, into the same numbers. (Unpacking all K
        before the loop made XLA copy the K histories twice, ~5% of the update's time.)"""

        def body(st: TD3State, xs: tuple[Batch | PackedBatch, jax.Array]):
            batch = xs[0]
            if isinstance(batch, PackedBatch):
                batch = unpack(batch, self.spec.act_dim)
            return self.update(st, batch, xs[1], anchor)

        state, metrics = jax.lax.scan(body, state, (batches, weights))
        out = {k: jnp.mean(v) for k, v in metrics.items() if k != "actor_loss"}
        out["actor_loss"] = jnp.nanmean(metrics["actor_loss"])
        return state, out


def no_anchor(state: TD3State) -> Anchor:
    """An inactive proximal term (meta-training, eq. 15)."""
    return Anchor(state.actor, state.critic, jnp.zeros((), jnp.float32))


@functools.lru_cache(maxsize=16)
def shared_td3(spec: TD3Spec) -> TD3:
    """One `TD3` per spec: it holds no state, so agents of one shape share compiled functions."""
    return TD3(spec)
