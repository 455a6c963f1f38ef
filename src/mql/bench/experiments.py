"""A/B measurements of variants of the MQL update, timed in alternating rounds."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mql.algos.mql.agent import td3_spec
from mql.bench.flops import update_flops
from mql.bench.learner import TARGET_ENV, learner_config, sample_batches
from mql.bench.memory import fill_random
from mql.bench.timing import _median, matmul_gflops
from mql.nn import uniform
from mql.offpolicy.networks import gru_context
from mql.offpolicy.replay import ReplayBuffer
from mql.offpolicy.td3 import TD3, no_anchor


class AutodiffGRU(nn.Module):
    """`ContextGRU` differentiated by JAX through its unrolled loop (its gradient before the
    hand-written one): same parameters, same numbers, for the `autodiff-gru` variant."""

    hidden: int

    @nn.compact
    def __call__(self, history: jax.Array) -> jax.Array:
        init = uniform(1.0 / float(self.hidden) ** 0.5)
        w_in = self.param("w_in", init, (history.shape[-1], 3 * self.hidden))
        b_in = self.param("b_in", init, (3 * self.hidden,))
        w_h = self.param("w_h", init, (self.hidden, 3 * self.hidden))
        b_h = self.param("b_h", init, (3 * self.hidden,))
        return gru_context.fun(w_in, b_in, w_h, b_h, history)  # the primal: plain autodiff


def _copy_tree(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


EXPERIMENTS = (
    "baseline", "xla-gru", "autodiff-gru", "donate", "no-ynn", "single-thread", "shared", "none"
)  # fmt: skip


def experiments(
    env: str = TARGET_ENV,
    *,
    overrides: dict[str, Any] | None = None,
    rounds: int = 5,
    updates: int = 100,
    variants: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Updates/s of variants of the update on the same batches, timed in alternating rounds.

    Variants: `baseline` (the update as MQL runs it); `autodiff-gru` (the GRU's gradient by
    JAX autodiff of the unrolled loop instead of the hand-written scan; see
    `mql.offpolicy.networks`);
    `donate` (`donate_argnums=0` on the state; the state and the anchor must then be distinct
    buffers, so a copy is passed);
    `no-ynn` (XLA compile options that keep dots off the YNNPACK library path);
    `single-thread` (`xla_cpu_multi_thread_eigen=false`); `xla-gru` (the GRU compiled by XLA,
    `gru_kernel="xla"`, instead of the native kernels of `mql.kernels` that "auto" picks);
    `shared` and `none` context modes (the paper's single GRU, and no context: the cost of the
    GRUs).
    """
    import mql.envs

    say = log or (lambda _msg: None)
    cfg = learner_config(env, **(overrides or {}))
    probe = mql.envs.make(env, seed=cfg.seed)
    obs_dim = int(np.prod(probe.observation_space.shape))
    act_dim = int(np.prod(probe.action_space.shape))
    horizon = probe.horizon
    spec = td3_spec(cfg, obs_dim, act_dim)
    k = cfg.updates_per_call
    buffer = ReplayBuffer(20_000, obs_dim, act_dim, spec.history_len)
    fill_random(buffer, 20_000, horizon)
    batches, weights = sample_batches(buffer, np.random.default_rng(0), k, cfg.batch_size)
    batches, weights = jax.device_put((batches, weights))
    names = list(variants or EXPERIMENTS)
    options = {
        "no-ynn": {"xla_cpu_experimental_ynn_fusion_type": ""},
        "single-thread": {"xla_cpu_multi_thread_eigen": False},
    }
    runners: dict[str, tuple[Callable, Any, Any, float]] = {}
    for name in names:
        vspec = spec
        if name in ("shared", "none"):
            vspec = dataclasses.replace(spec, context_mode=name)
        if name in ("xla-gru", "autodiff-gru"):
            vspec = dataclasses.replace(spec, gru_kernel="xla")
        td3 = TD3(vspec)
        if name == "autodiff-gru" and td3.gru is not None:
            td3.gru = AutodiffGRU(vspec.context_dim)
        state = _copy_tree(td3.init(jax.random.PRNGKey(cfg.seed), cfg.lr))
        anchor = _copy_tree(no_anchor(state))
        t0 = time.perf_counter()
        if name == "donate":
            fn = jax.jit(td3.scan_updates, donate_argnums=0)
        elif name in options:
            fn = td3.update_many.lower(state, batches, weights, anchor).compile(
                compiler_options=options[name]
            )
        else:
            fn = td3.update_many
        state, _ = fn(state, batches, weights, anchor)
        jax.block_until_ready(state)
        if name in ("shared", "none") or not runners:
            flops = update_flops(td3, state, batches, weights, anchor)["per_update"]
        else:  # the same computation as the first variant, compiled differently
            flops = next(iter(runners.values()))[3]
        runners[name] = (fn, state, anchor, flops)
        say(f"experiments: {name} compiled in {time.perf_counter() - t0:.1f}s")
    calls = max(1, round(updates / k))
    rates: dict[str, list[float]] = {n: [] for n in names}
    peaks: list[float] = []
    for _ in range(max(1, rounds)):
        peaks.append(matmul_gflops())
        for name in names:
            fn, state, anchor, flops = runners[name]
            start = time.perf_counter()
            for _ in range(calls):
                state, metrics = fn(state, batches, weights, anchor)
            jax.block_until_ready((state, metrics))
            rates[name].append(calls * k / (time.perf_counter() - start))
            runners[name] = (fn, state, anchor, flops)
    base = np.asarray(rates[names[0]])
    out = []
    for name in names:
        r = np.asarray(rates[name])
        out.append(
            {
                "variant": name,
                "updates_per_s": _median(r),
                "ratio_to_first": _median(r / base),
                "flops_per_update": runners[name][3],
                "utilisation": runners[name][3] * _median(r) / (max(peaks) * 1e9),
                "peak_gflops": max(peaks),
            }
        )
    return out
