"""FLOPs of one MQL update: XLA's cost analysis, and the matmuls counted by hand; and the
matmul FLOPs of any traced function with its loops' trip counts (`jaxpr_matmul_flops`)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
from jax.extend import core as jax_core

from mql.offpolicy.replay import Batch, PackedBatch, unpack
from mql.offpolicy.td3 import TD3, Anchor, TD3Spec, TD3State, shared_td3


def cost_flops(compiled: Any) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per device
        cost = cost[0]
    return float(cost.get("flops", math.nan))


def mlp_flops(batch: int, widths: Sequence[int]) -> int:
    """XLA's count for a forward pass of `MLP`: matmuls, bias adds and ReLUs.

    widths = (in, hidden..., out): 2 B in out per layer, B out per bias, B h per ReLU.
    """
    mm = sum(2 * batch * a * b for a, b in itertools.pairwise(widths))
    return mm + batch * sum(widths[1:]) + batch * sum(widths[1:-1])


def matmul_flops(spec: TD3Spec, batch: int) -> dict[str, float]:
    """Matmul FLOPs of one update counted by hand (what autodiff emits after dead-code removal).

    Returns the critic step, the actor step and `per_update` = critic + actor / policy_freq.
    A dense layer costs B·in·out multiply-adds forward, the same again for its weight
    gradient and for its input gradient; the first layer's input gradient only for the input
    columns that need one (XLA slices the matmul to them). The GRU is unrolled without
    gradient; with gradient it runs forward (input projection, recurrence) then backward
    (recurrence, then the weight gradients of the recurrent and input matrices).
    """
    o, a, c, H, F = spec.obs_dim, spec.act_dim, spec.context_dim, spec.history_len, spec.feat_dim
    if spec.context_mode == "none":
        c = 0

    def layers(n_in: int, n_out: int) -> list[tuple[int, int]]:
        w = (n_in, *spec.hidden, n_out)
        return list(itertools.pairwise(w))

    def fwd(ls: list[tuple[int, int]]) -> int:
        return sum(i * j for i, j in ls)

    def bwd(ls: list[tuple[int, int]], weights: bool, input_cols: int) -> int:
        dw = fwd(ls) if weights else 0
        dx = sum(i * j for i, j in ls[1:]) + input_cols * ls[0][1]
        return dw + dx

    actor, head = layers(o + c, a), layers(o + a + c, 1)
    gru_fwd = H * F * 3 * c + H * c * 3 * c if c else 0
    gru_grad = 2 * H * F * 3 * c + 3 * H * c * 3 * c if c else 0
    separate = spec.context_mode == "separate"
    # critic step: target actor and target critic forward, critic forward + backward (the
    # first layer's input gradient only for the z columns, which feed the critic's GRU)
    critic = (gru_fwd if separate else 0) + fwd(actor)  # target actor (shared: same z as below)
    critic += gru_fwd + 2 * fwd(head)  # target critic
    critic += gru_grad + 2 * (fwd(head) + bwd(head, True, c))  # critic, grad to its GRU
    # actor step: policy forward + backward (input gradient for z with its own GRU), the
    # critic's context and q1 forward + input gradient for the action columns only
    act_step = (gru_grad if separate else gru_fwd) + fwd(actor)
    act_step += bwd(actor, True, c if separate else 0)
    act_step += (gru_fwd if separate else 0) + fwd(head) + bwd(head, False, a)
    scale = 2.0 * batch
    return {
        "critic_step": scale * critic,
        "actor_step": scale * act_step,
        "per_update": scale * (critic + act_step / spec.policy_freq),
    }


def update_flops(
    td3: TD3, state: TD3State, batches: Batch | PackedBatch, weights: Any, anchor: Anchor
) -> dict[str, float]:
    """FLOPs per update from XLA's cost analysis of the compiled `update_many`.

    The scan body is counted once; both branches of the actor `cond` are counted, so the actor
    branch (compiled alone) is taken out (1 - 1/policy_freq) times. `batches` may carry a
    leading K axis (the shapes `update_many` was called with, so the compile is a cache hit).
    XLA cannot see inside custom calls, so with native GRU kernels (`gru_kernel` other than
    "xla") the count is taken from the XLA-GRU build of the same update: same algorithm, same
    parameters, same FLOPs.
    """
    if td3.spec.gru_kernel != "xla":
        td3 = shared_td3(dataclasses.replace(td3.spec, gru_kernel="xla"))
    total = cost_flops(td3.update_many.lower(state, batches, weights, anchor).compile())
    batch, w = jax.tree_util.tree_map(lambda x: x[0], (batches, weights))
    if isinstance(batch, PackedBatch):
        batch = unpack(batch, td3.spec.act_dim)
    actor = cost_flops(jax.jit(td3.actor_step).lower(state, batch, w, anchor).compile())
    pf = td3.spec.policy_freq
    return {
        "cost_update_both_branches": total,
        "cost_actor_branch": actor,
        "per_update": total - (1.0 - 1.0 / pf) * actor,
    }


def dot_general_flops(eqn: Any) -> int:
    """2 x batch x contracted x free(lhs) x free(rhs) for one `dot_general` equation."""
    (l_contract, r_contract), (l_batch, r_batch) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    batch = math.prod(lhs[i] for i in l_batch)
    contracted = math.prod(lhs[i] for i in l_contract)
    l_free = math.prod(d for i, d in enumerate(lhs) if i not in (*l_contract, *l_batch))
    r_free = math.prod(d for i, d in enumerate(rhs) if i not in (*r_contract, *r_batch))
    return 2 * batch * contracted * l_free * r_free


def _sub_jaxprs(eqn: Any) -> list[Any]:
    found = []
    for value in eqn.params.values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, jax_core.ClosedJaxpr):
                found.append(item.jaxpr)
            elif isinstance(item, jax_core.Jaxpr):
                found.append(item)
    return found


def _jaxpr_flops(jaxpr: Any, while_trips: int) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += dot_general_flops(eqn)
        elif name == "scan":
            total += eqn.params["length"] * _jaxpr_flops(eqn.params["jaxpr"].jaxpr, while_trips)
        elif name == "while":
            cond = _jaxpr_flops(eqn.params["cond_jaxpr"].jaxpr, while_trips)
            body = _jaxpr_flops(eqn.params["body_jaxpr"].jaxpr, while_trips)
            total += while_trips * body + (while_trips + 1) * cond
        elif name == "cond":
            total += max(_jaxpr_flops(b.jaxpr, while_trips) for b in eqn.params["branches"])
        else:
            total += sum(_jaxpr_flops(sub, while_trips) for sub in _sub_jaxprs(eqn))
    return total


def jaxpr_matmul_flops(fn: Any, *args: Any, while_trips: int = 1) -> float:
    """Matmul FLOPs of one call `fn(*args)`, counted on its jaxpr (before XLA): every
    `dot_general`, a `scan` body (`lax.map`, `fori_loop` with static bounds) times its length,
    a `cond` at its dearest branch, and a `while_loop` body `while_trips` times (its trip count
    is data-dependent: the caller says how many ran). XLA's cost analysis counts a loop body
    once whatever its trip count, so it cannot total a step made of loops; elementwise work is
    not counted here (it is not what a matmul peak measures)."""
    return float(_jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr, while_trips))
