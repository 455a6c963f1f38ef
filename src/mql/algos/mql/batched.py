"""MQL's adaptation of many tasks in one compiled program, and its batched acting policy.

The batched evaluation (`mql.evaluate`, `eval_batched`) adapts every task of an evaluation
together. Each task's learner state (parameters, targets, Adam states, PRNG key, counter) is one
slice of a state with a leading task axis; the eq. 18 and eq. 19 updates of all tasks run as one
compiled call per chunk of updates (`task_updates`): per task the same `TD3.scan_updates` as
`MQL._updates` (proximal anchor θ_meta, φ_meta shared, λ per task; weights 1 for eq. 18 and β
for eq. 19), over the task axis either

- `"map"` (`jax.lax.map`, the default on a CPU): the tasks one after another inside the
  program, each the same computation as one at a time; XLA compiles it inside the loop over
  tasks and rounds a few operations differently, so adapted parameters agree to ~2e-7 (measured:
  2.2e-7 on cheetah-vel after 5 + 20 updates, 1.2e-7 on the tiny test config;
  tests/test_eval_batched.py). On this machine's XLA CPU backend the batched dots of `vmap`
  are slower than plain ones (0.7-0.85x, docs/performance.md, "Evaluation"), so this is also
  the faster form there; or
- `"vmap"` (the default on an accelerator): one computation over all tasks. The counter and the
  PRNG key are shared by all tasks (they start from the meta-trained state and advance alike),
  so the delayed actor step stays a `lax.cond` and not a select of both branches. Batched
  matmuls round differently: parameters agree with the one-at-a-time path to ~1e-5 after ten
  eq. 19 updates (measured, `test_vmap_adaptation_within_tolerance`).

Minibatches: each task draws its indices from its own Generator in the order `MQL.adapt` draws
them, so every task sees the same minibatches as one at a time; they are gathered into reused,
aligned host memory kept by the agent (`TaskStaging`), as much per call as one task's call of
`updates_per_call` updates stages one at a time, at most `STAGING_BYTES` (fewer updates per call,
then fewer tasks per group, when all tasks' minibatches would not fit). The number of
updates per call changes no number (mql.offpolicy.calls), nor does the chunk of minibatches
whose β is computed at once (the context GRU's rows are independent).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from mql.offpolicy.calls import call_sizes
from mql.offpolicy.replay import Batch, PackedBatch, ReplayBuffer, unpack
from mql.offpolicy.staging import aligned_empty
from mql.offpolicy.td3 import TD3, Anchor, TD3State
from mql.rollout import Policy

__all__ = [
    "STAGING_BYTES",
    "MQLBatchPolicy",
    "TaskAxis",
    "TaskStaging",
    "batched_act",
    "default_task_axis",
    "plan_calls",
    "run_task_updates",
    "stack_states",
    "task_updates",
    "unstack_state",
]

TaskAxis = Literal["map", "vmap"]
STAGING_BYTES = 1 << 30
"""Host bytes of the minibatches of one compiled multi-task call (all its tasks)."""

WeightFn = Callable[[Batch], np.ndarray]


def default_task_axis() -> TaskAxis:
    """`"map"` on a CPU (exact, and faster there), `"vmap"` on an accelerator."""
    return "map" if jax.default_backend() == "cpu" else "vmap"


def stack_states(states: Sequence[TD3State]) -> TD3State:
    """One state with a leading task axis on every leaf."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def unstack_state(states: TD3State, j: int) -> TD3State:
    """Task `j`'s state of a stacked state."""
    return jax.tree_util.tree_map(lambda x: x[j], states)


@functools.lru_cache(maxsize=32)
def task_updates(td3: TD3, axis: TaskAxis) -> Callable[..., tuple[TD3State, dict[str, Any]]]:
    """jit-compiled K updates of every task: (states (T, ...), batches (T, K, B, ...), weights
    (T, K, B), θ_meta, φ_meta, λ (T,)) -> (states, metrics (T,)); eq. 18 (weights 1) and eq. 19
    (weights β), each with the proximal term λ/2 |θ - θ_meta|² of its task."""

    def one(state, batches, weights, actor, critic, coef):
        return td3.scan_updates(state, batches, weights, Anchor(actor, critic, coef))

    if axis == "map":

        def run(states, batches, weights, actor, critic, coefs):
            return jax.lax.map(
                lambda x: one(x[0], x[1], x[2], actor, critic, x[3]),
                (states, batches, weights, coefs),
            )

    elif axis == "vmap":
        axes = TD3State(
            actor=0,
            critic=0,
            actor_target=0,
            critic_target=0,
            actor_opt=0,
            critic_opt=0,
            key=None,
            updates=None,
        )
        mapped = jax.vmap(one, in_axes=(axes, 0, 0, None, None, 0), out_axes=(axes, 0))

        def run(states, batches, weights, actor, critic, coefs):
            shared = states.replace(key=states.key[0], updates=states.updates[0])
            out, metrics = mapped(shared, batches, weights, actor, critic, coefs)
            n = coefs.shape[0]
            return out.replace(
                key=jnp.broadcast_to(out.key, (n, *out.key.shape)),
                updates=jnp.broadcast_to(out.updates, (n,)),
            ), metrics

    else:
        raise ValueError(f"task axis must be 'map' or 'vmap', got {axis!r}")
    return jax.jit(run)


class TaskStaging:
    """Minibatches of several tasks, (G, K, B, ...), gathered into reused 64-byte-aligned host
    arrays (as `mql.offpolicy.staging.BatchStaging`, whose contract this keeps: pass the outputs
    of the computation that reads a staged batch to `consumed_by`). Kept by the agent across
    evaluations: fresh memory for every call costs page faults (about 1.5 s per 150 MB on this
    machine, docs/performance.md), reused memory none."""

    def __init__(self) -> None:
        self._slots: dict[tuple[int, ...], dict[str, Any]] = {}

    def stage(
        self, buffers: Sequence[ReplayBuffer], indices: Sequence[Sequence[np.ndarray]]
    ) -> tuple[PackedBatch, PackedBatch]:
        """Task j's minibatches `indices[j]` (K arrays of B rows of `buffers[j]`), stacked:
        (host, device), leading shape (G, K, B)."""
        g, k, b = len(indices), len(indices[0]), len(indices[0][0])
        first = buffers[0]
        key = (g, k, b, first.history_len + 1, first.feature_dim, first.obs_dim)
        slot = self._slots.get(key)
        if slot is None:
            n = g * k * b
            flat = PackedBatch(
                window=aligned_empty((n, key[3], key[4])),
                next_obs=aligned_empty((n, key[5])),
                done=aligned_empty((n,)),
            )
            slot = self._slots[key] = {"flat": flat, "device": None, "readers": None}
        elif slot["device"] is not None:
            if slot["readers"] is None:
                raise RuntimeError(
                    "TaskStaging.stage: a batch of this shape may still be read; call "
                    "consumed_by(outputs) after launching the computation that reads it"
                )
            jax.block_until_ready(slot["readers"])
            for arr in slot["device"]:
                arr.delete()
        flat: PackedBatch = slot["flat"]
        per = k * b
        for j, (buffer, idx) in enumerate(zip(buffers, indices, strict=True)):
            part = PackedBatch(*(x[j * per : (j + 1) * per] for x in flat))
            buffer.gather_packed(np.concatenate(idx), out=part)
        host = PackedBatch(*(x.reshape(g, k, b, *x.shape[1:]) for x in flat))
        slot["device"], slot["readers"] = jax.device_put(host), None
        return host, slot["device"]

    def consumed_by(self, outputs: Any) -> None:
        """Mark the batches staged since the last call as read by `outputs`' computation."""
        for slot in self._slots.values():
            if slot["device"] is not None and slot["readers"] is None:
                slot["readers"] = outputs

    @property
    def nbytes(self) -> int:
        """Host bytes held by the staging arrays."""
        return sum(a.nbytes for slot in self._slots.values() for a in slot["flat"])


def _bytes_per_update(buffer: ReplayBuffer, batch_size: int) -> int:
    """Host bytes of one minibatch (windows, next observations, flags) and its weights."""
    window = (buffer.history_len + 1) * buffer.feature_dim
    return 4 * batch_size * (window + buffer.obs_dim + 2)


def plan_calls(
    n_tasks: int, per_update: int, updates_per_call: int, budget: int = STAGING_BYTES
) -> tuple[int, int]:
    """(tasks per group, updates per call): as many tasks and updates per compiled call as fit
    in `budget` bytes of minibatches, at most `updates_per_call`; at least one of each."""
    group = max(1, min(n_tasks, budget // per_update))
    groups = math.ceil(n_tasks / group)
    group = math.ceil(n_tasks / groups)  # balanced groups
    k = max(1, min(updates_per_call, budget // (group * per_update)))
    return group, k


def run_task_updates(
    td3: TD3,
    states: TD3State,
    n: int,
    draws: Sequence[Callable[[], np.ndarray]],
    weight_fns: Sequence[WeightFn] | None,
    anchor: Anchor,
    buffers: Sequence[ReplayBuffer],
    batch_size: int,
    updates_per_call: int,
    staging: TaskStaging,
    axis: TaskAxis,
    budget: int | None = None,
) -> TD3State:
    """`n` updates of every task of `states` (leading axis T) in compiled multi-task calls
    (`task_updates`): task j's minibatches are `draws[j]()`, `batch_size` row indices into
    `buffers[j]`, weighted by `weight_fns[j]` (1 when None), with `anchor.coef[j]` its λ."""
    n_tasks = len(draws)
    if n <= 0 or n_tasks == 0:
        return states
    fn = task_updates(td3, axis)
    per = _bytes_per_update(buffers[0], batch_size)
    if budget is None:
        budget = min(STAGING_BYTES, updates_per_call * per)
    group, k_max = plan_calls(n_tasks, per, updates_per_call, budget)
    done: list[TD3State] = []
    for start in range(0, n_tasks, group):
        tasks = list(range(start, min(start + group, n_tasks)))
        part = jax.tree_util.tree_map(lambda x, t=tasks: x[t[0] : t[-1] + 1], states)
        coefs = anchor.coef[tasks[0] : tasks[-1] + 1]
        for k in call_sizes(n, k_max):
            indices = [[draws[j]() for _ in range(k)] for j in tasks]
            host, packed = staging.stage([buffers[j] for j in tasks], indices)
            if weight_fns is None:
                weights = np.ones((len(tasks), k, len(indices[0][0])), np.float32)
            else:
                act_dim = td3.spec.act_dim
                weights = np.stack(
                    [
                        weight_fns[j](unpack(PackedBatch(*(x[i] for x in host)), act_dim))
                        for i, j in enumerate(tasks)
                    ]
                )
            part, metrics = fn(part, packed, weights, anchor.actor, anchor.critic, coefs)
            staging.consumed_by((part, metrics))
        done.append(part)
    if len(done) == 1:
        return done[0]
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *done)


class MQLBatchPolicy:
    """Deterministic MQL actors of P parameter sets, each on E slots (slot n uses set n // E),
    with their online context windows: one compiled call per time step for all P x E slots.

    The call maps the single-observation action (`TD3._act`, what `MQLPolicy` computes) over
    the sets and, inside, over their slots (`lax.map`), so each slot's action is the one its
    `MQLPolicy` would return, bit for bit (tests/test_eval_batched.py)."""

    def __init__(self, td3: TD3, actor: Any, critic: Any, sets: int, repeat: int) -> None:
        s = td3.spec
        self.td3, self.actor, self.critic = td3, actor, critic
        self.sets, self.repeat = sets, repeat
        self.windows = np.zeros((sets * repeat, s.history_len, s.feat_dim), np.float32)

    @classmethod
    def of(cls, td3: TD3, policies: Sequence[Policy], repeat: int) -> MQLBatchPolicy:
        """The batch of `policies` (each with the `state` of an `MQLPolicy`), `repeat` slots
        each; policies sharing one state are one parameter set."""
        states = [getattr(p, "state", None) for p in policies]
        if not states or any(not isinstance(st, TD3State) for st in states):
            raise TypeError("MQLBatchPolicy needs MQL policies (with a TD3State `state`)")
        if all(st is states[0] for st in states):
            states, repeat = states[:1], len(states) * repeat
        actor = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[st.actor for st in states])
        critic = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[st.critic for st in states])
        return cls(td3, actor, critic, len(states), repeat)

    def reset(self) -> None:
        self.windows[:] = 0.0

    def act(self, obs: np.ndarray) -> np.ndarray:
        p, e = self.sets, self.repeat
        obs = np.asarray(obs, np.float32).reshape(p, e, -1)
        hist = self.windows.reshape(p, e, *self.windows.shape[1:])
        action = np.asarray(batched_act(self.td3)(self.actor, self.critic, obs, hist))
        return np.clip(action.reshape(p * e, -1), -1.0, 1.0).astype(np.float32)

    def observe(
        self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, active: np.ndarray
    ) -> None:
        """Push f_t = (a_t, r_t, o_t) onto the windows of the slots that stepped (as
        `ContextWindow.push`)."""
        a = self.td3.spec.act_dim
        rows = np.flatnonzero(active)
        w = self.windows
        w[rows, :-1] = w[rows, 1:]
        w[rows, -1, :a] = np.asarray(actions, np.float32).reshape(len(w), -1)[rows]
        w[rows, -1, a] = np.asarray(rewards, np.float32)[rows]
        w[rows, -1, a + 1 :] = np.asarray(obs, np.float32).reshape(len(w), -1)[rows]


@functools.lru_cache(maxsize=16)
def batched_act(td3: TD3) -> Callable[..., jax.Array]:
    """jit: (actor (P, ...), critic (P, ...), obs (P, E, obs_dim), history (P, E, H, F)) ->
    actions (P, E, act_dim), each `TD3._act` of its slot."""

    def per_set(x):
        actor, critic, obs, hist = x
        return jax.lax.map(lambda y: td3._act(actor, critic, y[0], y[1]), (obs, hist))

    def run(actor: Any, critic: Any, obs: jax.Array, hist: jax.Array) -> jax.Array:
        return jax.lax.map(per_set, (actor, critic, obs, hist))

    return jax.jit(run)
