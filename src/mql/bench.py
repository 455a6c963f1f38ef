"""Learner throughput: how fast MQL's update, its meta-training loop and its replay run here.

    mql bench [--presets cheetah-vel ant-goal humanoid-dir] [--rounds 3] [--updates 200]
              [--e2e-steps 200] [--fill 100000] [--quick] [--experiments] [--write]
    python benchmarks/bench.py ...          (the same)

For each preset (paper values, `mql.config.resolve(env, "mql")`) one run prints:

- peak: dense fp32 matmul throughput of this machine, measured with JAX (n x n x n, n = 1024);
- the MQL update (`TD3.update_many`, `updates_per_call` updates per compiled call, batches
  sampled from the replay buffer and already on the device): updates/s, FLOPs per update and
  utilisation = FLOPs/update x updates/s / peak;
- end-to-end meta-training (`MQL.run_iteration` with one update per collected step, after a
  compile/warm-up iteration): environment steps/s, and its ratio to the pure update rate (1.0
  would mean acting, environment stepping and replay cost nothing);
- action-selection latency per environment step (`MQLPolicy.act`: context window, jit call,
  exploration noise), one environment step, and host sampling per update (indices, then the
  context windows gathered into reused memory and handed to JAX, as `MQL` does it: `mql.staging`),
  with the host memory that staging keeps ("staging MB": one call's minibatches);
- replay bytes per stored transition and the peak memory while filling `--fill` transitions.

FLOPs per update come from XLA's cost analysis of the compiled update. XLA counts both branches
of the `lax.cond` that runs the delayed actor step, so the actor branch, compiled and counted on
its own, is weighted by 1/policy_freq: per update = cost(update) - (1 - 1/policy_freq) x
cost(actor branch). `hand` is an independent count of the matmul FLOPs only (`matmul_flops`).

Timing: the machine may be shared, so the peak, the update rate and the loop rate are measured
in alternating rounds (peak, half the pure updates, the loop, the other half, peak). The
end-to-end/update ratio is taken within each round; the table shows medians over rounds. The
peak is the best matmul measurement of the whole run (all presets): another process on one core
halves a large matmul's rate but slows the update less, as its small matmuls keep fewer cores
busy ("cores busy": process CPU time / wall time while updating). Utilisation = FLOPs/update x
median updates/s / that peak.
`--experiments` adds A/B measurements of variants of the update (the GRU's gradient, buffer
donation, XLA compile options, context modes), timed in alternating rounds in the same process.
`--write` replaces the generated part of the "Learner throughput" section of
docs/performance.md (between its markers).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import shlex
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mql import kernels
from mql.algos.mql import MQL, MQLPolicy, td3_spec
from mql.config import MQLConfig, resolve
from mql.docsection import write_section
from mql.networks import _uniform_init, gru_context
from mql.replay import Batch, PackedBatch, ReplayBuffer, unpack
from mql.staging import BatchStaging
from mql.td3 import TD3, Anchor, TD3Spec, TrainState, no_anchor, shared_td3

PRESETS: tuple[str, ...] = ("cheetah-vel", "ant-goal", "humanoid-dir")
TARGET_ENV = "cheetah-vel"
TARGETS = {"utilisation": 0.60, "e2e_ratio": 0.85, "replay_bytes": 400.0}
DOC = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
START = "<!-- learner-throughput:start -->"
END = "<!-- learner-throughput:end -->"

# Loop settings of the end-to-end measurement: no random warm-up, one update per collected step
# whatever the buffer size (the released rule below `small_buffer` transitions), and one episode
# per iteration (ant-goal's preset collects 5, which only makes an iteration 5x longer).
LOOP_OVERRIDES: dict[str, Any] = {
    "num_initial_steps": 0,
    "small_buffer": 10**12,
    "num_tasks_sample": 1,
}


# ------------------------------------------------------------------------------ machine
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, library versions and XLA flags of this process."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "backend": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "gru_kernel": _gru_kernel_line(),
    }


def _gru_kernel_line() -> str:
    """What `gru_kernel="auto"` (the default) runs here."""
    ok, why = kernels.status()
    return f"native, {kernels.lanes()} float lanes" if ok else f"xla ({why})"


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return "?"


def machine_line(info: dict[str, Any]) -> str:
    flags = f", XLA_FLAGS={info['xla_flags']!r}" if info["xla_flags"] else ""
    return (
        f"{info['system']}, {info['cpu']}, {info['logical_cpus']} logical CPUs "
        f"({info['usable_cpus']} usable); Python {info['python']}, jax {info['jax']}, "
        f"jaxlib {info['jaxlib']} ({info['backend']}){flags}; "
        f"GRU kernel: {info.get('gru_kernel', 'xla')}"
    )


# ------------------------------------------------------------------------------ timing
def _median(xs: Sequence[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64))) if len(xs) else math.nan


def matmul_gflops(n: int = 1024, repeats: int = 3, dtype: Any = jnp.float32) -> float:
    """Dense n x n x n matmul throughput with JAX (GFLOP/s, best of `repeats` timed calls)."""
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), dtype)
    b = jax.random.normal(key_b, (n, n), dtype)
    f = _matmul_fn()
    return 2.0 * n**3 / best_seconds(lambda: f(a, b).block_until_ready(), repeats) / 1e9


def best_seconds(call: Callable[[], Any], repeats: int) -> float:
    """Shortest wall time of `repeats` calls of `call`, after one untimed warm-up call."""
    call()
    best = math.inf
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def mlp_chain_gflops(batch: int, width: int, layers: int = 8, repeats: int = 5) -> float:
    """Throughput of the update's dominant shape alone, with XLA: a jitted chain of `layers`
    (batch x width) @ (width x width) matmuls, each followed by ReLU (GFLOP/s, best call).

    This is the ceiling of an MLP update at this batch and width on this machine: no GRU,
    no optimiser, no elementwise losses, nothing but its largest matmuls back to back."""
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (batch, width), jnp.float32)
    ws = [
        jax.random.normal(jax.random.fold_in(key, i), (width, width)) / width**0.5
        for i in range(layers)
    ]

    @jax.jit
    def chain(x: jax.Array, ws: list[jax.Array]) -> jax.Array:
        for w in ws:
            x = jax.nn.relu(x @ w)
        return x

    best = best_seconds(lambda: chain(x, ws).block_until_ready(), repeats)
    return 2.0 * batch * width * width * layers / best / 1e9


def numpy_matmul_gflops(batch: int, width: int, repeats: int = 50) -> float:
    """The same (batch x width) @ (width x width) product with NumPy's BLAS, for comparison
    (GFLOP/s, best call): how fast this machine multiplies these shapes outside XLA."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, width), dtype=np.float32)
    b = rng.standard_normal((width, width), dtype=np.float32)
    return 2.0 * batch * width * width / best_seconds(lambda: a @ b, repeats) / 1e9


_MATMUL: list[Callable] = []


def _matmul_fn() -> Callable:
    if not _MATMUL:
        _MATMUL.append(jax.jit(jnp.matmul))
    return _MATMUL[0]


# ------------------------------------------------------------------------------ learner
def learner_config(env: str, **overrides: Any) -> MQLConfig:
    """The paper preset of `env` for MQL with the benchmark's loop settings and `overrides`."""
    return resolve(env, "mql", "paper", **{**LOOP_OVERRIDES, **overrides})


def sample_batches(
    buffer: ReplayBuffer, rng: np.random.Generator, k: int, batch_size: int
) -> tuple[PackedBatch, np.ndarray]:
    """`k` stacked minibatches as `MQL._updates` draws them (host arrays) and unit weights."""
    idx = np.concatenate([buffer.sample_indices(rng, batch_size) for _ in range(k)])
    return buffer.gather_packed(idx).stacked(k), np.ones((k, batch_size), np.float32)


def fill_random(buffer: ReplayBuffer, n: int, horizon: int, seed: int = 0) -> None:
    """Add `n` transitions of random episodes of `horizon` steps (a few task ids)."""
    rng = np.random.default_rng(seed)
    o, a = buffer.obs_dim, buffer.act_dim
    done = 0
    while done < n:
        t = min(horizon, n - done)
        obs = rng.normal(size=(t + 1, o)).astype(np.float32)
        buffer.add_episode(
            obs[:-1],
            rng.uniform(-1, 1, (t, a)).astype(np.float32),
            rng.normal(size=t).astype(np.float32),
            obs[1:],
            terminated=False,
            task=int(rng.integers(10)),
        )
        done += t


def prepared_learner(env: str, fill: int = 5_000, **overrides: Any) -> tuple[MQL, tuple]:
    """A preset's learner (`learner_config`) with `fill` random transitions in its replay, and
    one call's minibatches, drawn as `MQL._updates` draws them, on the device: the learner and
    the arguments (batches, weights, anchor) that follow the state in `update_many`."""
    agent = MQL(learner_config(env, **overrides))
    fill_random(agent.replay, fill, agent.env.horizon)
    cfg = agent.cfg
    batches, weights = sample_batches(
        agent.replay, np.random.default_rng(0), cfg.updates_per_call, cfg.batch_size
    )
    return agent, jax.device_put((batches, weights, no_anchor(agent.state)))


# ------------------------------------------------------------------------------ FLOPs
def _cost_flops(compiled: Any) -> float:
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
    td3: TD3, state: TrainState, batches: Batch | PackedBatch, weights: Any, anchor: Anchor
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
    total = _cost_flops(td3.update_many.lower(state, batches, weights, anchor).compile())
    batch, w = jax.tree_util.tree_map(lambda x: x[0], (batches, weights))
    if isinstance(batch, PackedBatch):
        batch = unpack(batch, td3.spec.act_dim)
    actor = _cost_flops(jax.jit(td3.actor_step).lower(state, batch, w, anchor).compile())
    pf = td3.spec.policy_freq
    return {
        "cost_update_both_branches": total,
        "cost_actor_branch": actor,
        "per_update": total - (1.0 - 1.0 / pf) * actor,
    }


# ------------------------------------------------------------------------------ replay
def replay_memory(
    obs_dim: int, act_dim: int, history_len: int, n: int = 100_000, horizon: int = 200
) -> dict[str, float]:
    """Bytes per transition and the peak traced memory while filling `n` transitions."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    rss0 = _rss_bytes()
    start = time.perf_counter()
    buffer = ReplayBuffer(n, obs_dim, act_dim, history_len)
    fill_random(buffer, n, horizon)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    rss1 = _rss_bytes()
    if not was_tracing:
        tracemalloc.stop()
    return {
        "bytes_per_transition": float(buffer.bytes_per_transition),
        "fill_peak_mb": (peak - base) / 2**20,
        "fill_rss_growth_mb": (rss1 - rss0) / 2**20 if rss0 and rss1 else math.nan,
        "fill_transitions": float(n),
        "fill_s": seconds,
        # the released code's layout: obs, action, reward, next_obs, done and two flattened
        # history windows of H (action, reward, obs) rows, float32 (REFERENCE §2)
        "released_bytes_per_transition": 4.0
        * (2 * obs_dim + act_dim + 2 + 2 * history_len * (act_dim + 1 + obs_dim)),
    }


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# ------------------------------------------------------------------------------ one preset
def time_updates(
    td3: TD3, state: TrainState, dev: tuple, calls: int
) -> tuple[TrainState, float, float]:
    """`calls` compiled calls of `update_many`: (state, updates/s, cores busy on average)."""
    batches, weights, anchor = dev
    k = weights.shape[0]
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        state, metrics = td3.update_many(state, batches, weights, anchor)
    jax.block_until_ready((state, metrics))
    wall = time.perf_counter() - start
    return state, calls * k / wall, (time.process_time() - cpu) / wall


def measure_preset(
    env: str,
    *,
    overrides: dict[str, Any] | None = None,
    rounds: int = 3,
    updates: int = 200,
    e2e_steps: int = 200,
    fill: int = 100_000,
    latency_calls: int = 300,
    peak_n: int = 1024,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every number of the table for one preset (see the module docstring)."""
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    cfg = learner_config(env, **(overrides or {}))
    replay_size = max(cfg.batch_size, min(cfg.replay_size, 100_000))
    cfg = dataclasses.replace(cfg, replay_size=replay_size)
    agent = MQL(cfg)
    spec, td3 = agent.spec, agent.td3
    say(f"{env}: learner built in {time.perf_counter() - t_start:.1f}s")
    k = cfg.updates_per_call

    # compile + warm-up: one iteration of the loop (acting, replay, updates)
    t0 = time.perf_counter()
    agent.run_iteration()
    rng = np.random.default_rng(1)
    batches, weights = sample_batches(agent.replay, rng, k, cfg.batch_size)
    dev = jax.device_put((batches, weights, no_anchor(agent.state)))
    state = agent.state
    state, _ = td3.update_many(state, *dev)  # compiles the K-update call if the loop did not
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    say(f"{env}: compiled and warmed up in {compile_s:.1f}s")

    t0 = time.perf_counter()
    flops = update_flops(td3, state, *dev)
    hand = matmul_flops(spec, cfg.batch_size)
    say(f"{env}: FLOPs counted in {time.perf_counter() - t0:.1f}s")

    # rounds: peak, half the pure updates, the loop, the other half, peak; every ratio is taken
    # within a round, so a load change on a shared machine moves numerator and denominator alike
    half = max(1, round(updates / k / 2))
    rows: list[dict[str, float]] = []
    for r in range(max(1, rounds)):
        peak = matmul_gflops(peak_n)
        state, ups1, cores1 = time_updates(td3, state, dev, half)
        steps0, t_collect, t_train = agent.env_steps, 0.0, 0.0
        start = time.perf_counter()
        while agent.env_steps - steps0 < e2e_steps:
            m = agent.run_iteration()
            t_collect += m.get("time/collect_s", 0.0)
            t_train += m.get("time/train_s", 0.0)
        elapsed = time.perf_counter() - start
        e2e = (agent.env_steps - steps0) / elapsed
        state, ups2, cores2 = time_updates(td3, state, dev, half)
        peak = max(peak, matmul_gflops(peak_n))
        chain = mlp_chain_gflops(cfg.batch_size, max(spec.hidden))
        blas = numpy_matmul_gflops(cfg.batch_size, max(spec.hidden))
        ups = 2.0 / (1.0 / ups1 + 1.0 / ups2)  # same number of updates in both halves
        rows.append(
            {
                "peak_gflops": peak,
                "chain_gflops": chain,
                "blas_gflops": blas,
                "updates_per_s": ups,
                "update_cores": (cores1 + cores2) / 2.0,
                "e2e_steps_per_s": e2e,
                "e2e_ratio": e2e / ups,
                "collect_share": t_collect / elapsed,
                "train_share": t_train / elapsed,
            }
        )
        say(
            f"{env}: round {r + 1}: peak {peak:.1f} GFLOP/s, {ups:.1f} updates/s "
            f"({(cores1 + cores2) / 2:.1f} cores busy), end-to-end {e2e:.1f} steps/s"
        )

    # per-step costs of the loop
    t0 = time.perf_counter()
    policy = MQLPolicy(td3, agent.state, cfg.expl_noise, np.random.default_rng(2))
    policy.reset()
    env_ = agent.env
    env_.set_task(agent.train_tasks[0])
    obs, _ = env_.reset(seed=0)
    act_t, step_t = [], []
    for _ in range(latency_calls):
        t = time.perf_counter()
        action = policy.act(obs)
        t2 = time.perf_counter()
        next_obs, reward, term, trunc, _ = env_.step(action)
        t3 = time.perf_counter()
        policy.observe(obs, action, float(reward))
        act_t.append(t2 - t)
        step_t.append(t3 - t2)
        obs = next_obs
        if term or trunc:
            obs, _ = env_.reset(seed=1)
            policy.reset()
    # host sampling as `MQL._updates` does it: indices, then gather and transfer through
    # reused memory (mql.staging); the first call allocates, so it is not timed
    staging = BatchStaging()
    sample_t = []
    for rep in range(4):
        t = time.perf_counter()
        indices = [agent.replay.sample_indices(rng, cfg.batch_size) for _ in range(k)]
        _, staged = staging.stage(agent.replay, indices)
        jax.block_until_ready(staged)
        if rep:
            sample_t.append((time.perf_counter() - t) / k)
        staging.consumed_by(staged)
    staging_mb = staging.nbytes / 1e6
    del staging, staged
    say(f"{env}: latencies measured in {time.perf_counter() - t0:.1f}s")
    mem = replay_memory(spec.obs_dim, spec.act_dim, spec.history_len, fill, agent.env.horizon)
    say(f"{env}: replay filled in {mem['fill_s']:.1f}s")
    med = {key: _median([row[key] for row in rows]) for key in rows[0]}
    # the machine's peak is the best measurement of the run: on a shared machine a busy core
    # halves a matmul's rate while the update, mostly single-threaded, hardly notices
    med["peak_gflops"] = max(row["peak_gflops"] for row in rows)
    med["utilisation"] = flops["per_update"] * med["updates_per_s"] / (med["peak_gflops"] * 1e9)
    # the ceilings are best-of-run too, so they compare with the peak on the same footing
    med["chain_gflops"] = max(row["chain_gflops"] for row in rows)
    med["blas_gflops"] = max(row["blas_gflops"] for row in rows)
    update_s = 1.0 / med["updates_per_s"]
    return {
        "env": env,
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan,
        "obs_dim": spec.obs_dim,
        "act_dim": spec.act_dim,
        "history_len": spec.history_len,
        "context_dim": spec.context_dim,
        "context_mode": spec.context_mode,
        "hidden": list(spec.hidden),
        "batch_size": cfg.batch_size,
        "updates_per_call": k,
        "policy_freq": spec.policy_freq,
        **med,
        "rounds": rows,
        "flops_per_update": flops["per_update"],
        "flops_detail": flops,
        "matmul_flops_per_update_hand": hand["per_update"],
        "matmul_flops_hand": hand,
        "act_latency_us": _median(act_t) * 1e6,
        "env_step_us": _median(step_t) * 1e6,
        "update_over_env_step": update_s / _median(step_t),
        "sample_us_per_update": _median(sample_t) * 1e6,
        "staging_mb": staging_mb,
        "batch_bytes": int(sum(x.nbytes for x in batches) + weights.nbytes) // k,
        "compile_s": compile_s,
        **mem,
        "seconds": time.perf_counter() - t_start,
    }


# ------------------------------------------------------------------------------ experiments
class AutodiffGRU(nn.Module):
    """`ContextGRU` differentiated by JAX through its unrolled loop (its gradient before the
    hand-written one): same parameters, same numbers, for the `autodiff-gru` variant."""

    hidden: int

    @nn.compact
    def __call__(self, history: jax.Array) -> jax.Array:
        init = _uniform_init(1.0 / float(self.hidden) ** 0.5)
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
    JAX autodiff of the unrolled loop instead of the hand-written scan; see `mql.networks`);
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
            fn = jax.jit(td3._update_many, donate_argnums=0)
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


# ------------------------------------------------------------------------------ report
def _targets(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        if row["env"] != TARGET_ENV:
            continue
        checks = [
            ("update utilisation", row["utilisation"], TARGETS["utilisation"], ">=", "{:.0%}"),
            (
                "end-to-end / update rate",
                row["e2e_ratio"],
                TARGETS["e2e_ratio"],
                ">=",
                "{:.0%}",
            ),
            (
                "replay bytes/transition",
                row["bytes_per_transition"],
                TARGETS["replay_bytes"],
                "<=",
                "{:.0f}",
            ),
        ]
        for name, value, target, op, fmt in checks:
            ok = value >= target if op == ">=" else value <= target
            lines.append(
                f"- {TARGET_ENV} {name}: {fmt.format(value)} (target {op} "
                f"{fmt.format(target)}): {'met' if ok else 'NOT met'}"
            )
    return lines


def markdown(rows: list[dict[str, Any]]) -> str:
    """Two tables: the update, and the loop and replay."""
    lines = [
        "| preset | obs/act/H/ctx | matmul peak GFLOP/s | updates/s | MFLOP/update (XLA) "
        "| matmul MFLOP/update (hand) | achieved GFLOP/s | utilisation | cores busy "
        "| ceiling: B x W² matmul+ReLU chain, XLA | same product, NumPy BLAS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['obs_dim']}/{r['act_dim']}/{r['history_len']}/"
            f"{r['context_dim']} | {r['peak_gflops']:.1f} | {r['updates_per_s']:.1f} "
            f"| {r['flops_per_update'] / 1e6:,.1f} "
            f"| {r['matmul_flops_per_update_hand'] / 1e6:,.1f} "
            f"| {r['flops_per_update'] * r['updates_per_s'] / 1e9:.1f} | {r['utilisation']:.0%} "
            f"| {r['update_cores']:.1f} "
            f"| {r['chain_gflops']:.1f} ({r['chain_gflops'] / r['peak_gflops']:.0%}) "
            f"| {r['blas_gflops']:.1f} ({r['blas_gflops'] / r['peak_gflops']:.0%}) |"
        )
    lines += [
        "",
        "| preset | end-to-end env steps/s | end-to-end / update rate | time collecting "
        "| act latency µs | env step µs | update / env step | host sampling µs/update (MB/batch) "
        "| staging MB | replay B/transition (released layout) | peak MB filling | fill s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['e2e_steps_per_s']:.1f} | {r['e2e_ratio']:.0%} "
            f"| {r['collect_share']:.0%} | {r['act_latency_us']:.0f} | {r['env_step_us']:.0f} "
            f"| {r['update_over_env_step']:.0f}x | {r['sample_us_per_update']:.0f} "
            f"({r['batch_bytes'] / 2**20:.1f}) | {r['staging_mb']:.0f} "
            f"| {r['bytes_per_transition']:.0f} ({r['released_bytes_per_transition']:.0f}) "
            f"| {r['fill_peak_mb']:.1f} ({r['fill_transitions']:,.0f}) | {r['fill_s']:.1f} |"
        )
    return "\n".join(lines)


def markdown_experiments(rows: list[dict[str, Any]], env: str) -> str:
    lines = [
        f"A/B on {env} (same batches, alternating rounds, medians):",
        "",
        "| variant | updates/s | vs baseline | MFLOP/update | utilisation |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['updates_per_s']:.1f} | {r['ratio_to_first']:.2f}x "
            f"| {r['flops_per_update'] / 1e6:,.1f} | {r['utilisation']:.0%} |"
        )
    return "\n".join(lines)


def section(
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    command: str,
    args: argparse.Namespace,
    exp: list[dict[str, Any]] | None,
) -> str:
    parts = [
        START,
        f"Command: `{command}` ({args.rounds} rounds; {args.updates} timed updates and "
        f"≥{args.e2e_steps} end-to-end environment steps per round; medians shown).",
        "",
        f"Machine: {machine_line(info)}",
        "",
        markdown(rows),
        "",
        "1-minute load average after each preset (this benchmark alone accounts for about 1 "
        "to 2 on this machine; more means other processes shared the cores): "
        + ", ".join(f"{r['env']} {r['load_avg_1min']:.1f}" for r in rows)
        + ".",
        "",
        "Targets:",
        *_targets(rows),
    ]
    if exp:
        parts += ["", markdown_experiments(exp, args.presets[0])]
    parts.append(END)
    return "\n".join(parts)


def write_doc(text: str, path: Path = DOC) -> None:
    """Replace this benchmark's marked section of `path` (or append it)."""
    write_section(path, START, END, "Learner throughput", text)


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--override wants KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    field_type = {f.name: f.type for f in dataclasses.fields(MQLConfig)}.get(key)
    if field_type is None:
        raise argparse.ArgumentTypeError(f"unknown config field {key!r}")
    if "tuple" in str(field_type):
        return key, tuple(int(v) for v in value.split(",") if v)
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def _finite_positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mql bench", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="environments")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--updates", type=int, default=200, help="timed updates per round")
    parser.add_argument(
        "--e2e-steps", type=int, default=200, help="end-to-end environment steps per round"
    )
    parser.add_argument("--fill", type=int, default=100_000, help="transitions for the memory")
    parser.add_argument(
        "--quick", action="store_true", help="1 round, 100 updates, 200 steps, 20k fill"
    )
    parser.add_argument(
        "--override",
        action="append",
        type=_parse_override,
        default=[],
        metavar="KEY=VALUE",
        help="config field override, e.g. batch_size=512 or hidden=64,64 (repeatable)",
    )
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="also A/B variants of the update (donation, XLA options, context modes) on "
        "the first preset",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--write", action="store_true", help=f"update {DOC.name}")
    parser.add_argument("--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.updates, args.e2e_steps = 1, 100, 200
        args.fill = min(args.fill, 20_000)
    overrides = dict(args.override)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else None

    info = machine_info()
    print(f"Machine: {machine_line(info)}", flush=True)
    rows = []
    for env in args.presets:
        row = measure_preset(
            env,
            overrides=overrides,
            rounds=args.rounds,
            updates=args.updates,
            e2e_steps=args.e2e_steps,
            fill=args.fill,
            log=log,
        )
        rows.append(row)
        print(
            f"{env}: {row['updates_per_s']:.1f} updates/s, utilisation "
            f"{row['utilisation']:.0%} of this preset's best peak, end-to-end "
            f"{row['e2e_steps_per_s']:.1f} steps/s "
            f"({row['e2e_ratio']:.0%} of the update rate) [{row['seconds']:.0f}s]",
            flush=True,
        )
    # one machine, one peak: the best matmul measurement of the whole run
    machine_peak = max(rd["peak_gflops"] for row in rows for rd in row["rounds"])
    for row in rows:
        row["preset_peak_gflops"] = row["peak_gflops"]
        row["peak_gflops"] = machine_peak
        row["utilisation"] = row["flops_per_update"] * row["updates_per_s"] / (machine_peak * 1e9)
    exp = None
    if args.experiments:
        exp = experiments(
            args.presets[0],
            overrides=overrides,
            rounds=max(3, 2 * args.rounds + 1),
            updates=args.updates,
            log=log,
        )
    print()
    print(markdown(rows))
    targets = _targets(rows)
    if targets:
        print("\nTargets:\n" + "\n".join(targets))
    if exp:
        print("\n" + markdown_experiments(exp, args.presets[0]))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": info, "presets": rows, "experiments": exp}, indent=2)
        )
    if args.write:
        shown, skip = [], False  # output-only flags do not change the numbers: not recorded
        for a in argv if argv is not None else sys.argv[1:]:
            if skip or a == "--verbose":
                skip = False
                continue
            if a == "--json":
                skip = True
                continue
            if not a.startswith("--json="):
                shown.append(a)
        command = "mql bench " + " ".join(shlex.quote(a) for a in shown)
        write_doc(section(rows, info, command.strip(), args, exp))
    bad = [
        (r["env"], key)
        for r in rows
        for key in ("peak_gflops", "updates_per_s", "flops_per_update", "e2e_steps_per_s")
        if not _finite_positive(r[key])
    ]
    if bad:
        print(f"non-positive or non-finite measurements: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
