"""The preset learner the benchmarks time, its minibatches, and every number of one preset."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from mql import config
from mql.algos.mql.agent import MQL, MQLPolicy
from mql.algos.mql.config import MQLConfig
from mql.bench.flops import matmul_flops, update_flops
from mql.bench.memory import fill_random, replay_memory
from mql.bench.timing import (
    _median,
    matmul_gflops,
    mlp_chain_gflops,
    numpy_matmul_gflops,
    time_updates,
)
from mql.offpolicy.replay import PackedBatch, ReplayBuffer
from mql.offpolicy.staging import BatchStaging
from mql.offpolicy.td3 import no_anchor
from mql.rollout import run_episode

# Loop settings of the end-to-end measurement: no random warm-up, one update per collected step
# whatever the buffer size (the released rule below `small_buffer` transitions), and one episode
# per iteration (ant-goal's preset collects 5, which only makes an iteration 5x longer).
TARGET_ENV = "cheetah-vel"

LOOP_OVERRIDES: dict[str, Any] = {
    "num_initial_steps": 0,
    "small_buffer": 10**12,
    "num_tasks_sample": 1,
}


def learner_config(env: str, **overrides: Any) -> MQLConfig:
    """The paper preset of `env` for MQL with the benchmark's loop settings and `overrides`."""
    cfg = config.resolve(env, "mql", "paper", **{**LOOP_OVERRIDES, **overrides})
    assert isinstance(cfg, MQLConfig)
    return cfg


def sample_batches(
    buffer: ReplayBuffer, rng: np.random.Generator, k: int, batch_size: int
) -> tuple[PackedBatch, np.ndarray]:
    """`k` stacked minibatches as `MQL._updates` draws them (host arrays) and unit weights."""
    idx = np.concatenate([buffer.sample_indices(rng, batch_size) for _ in range(k)])
    return buffer.gather_packed(idx).stacked(k), np.ones((k, batch_size), np.float32)


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
    policy = _TimedPolicy(MQLPolicy(td3, agent.state, cfg.expl_noise, np.random.default_rng(2)))
    env_ = _TimedEnv(agent.env)
    env_.set_task(agent.train_tasks[0])
    episode = 0
    while len(env_.seconds) < latency_calls:
        run_episode(env_, policy, seed=min(episode, 1))
        episode += 1
    act_t, step_t = policy.seconds, env_.seconds
    # host sampling as `MQL._updates` does it: indices, then gather and transfer through
    # reused memory (mql.offpolicy.staging); the first call allocates, so it is not timed
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


class _TimedPolicy:
    """A policy whose `act` calls are timed (the bench's act latency)."""

    def __init__(self, policy: MQLPolicy) -> None:
        self.policy, self.seconds = policy, []

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        action = self.policy.act(obs)
        self.seconds.append(time.perf_counter() - start)
        return action

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None:
        self.policy.observe(obs, action, reward)


class _TimedEnv:
    """An environment whose `step` calls are timed (the bench's env step)."""

    def __init__(self, env: Any) -> None:
        self.env, self.seconds = env, []

    def set_task(self, task: Any) -> None:
        self.env.set_task(task)

    def reset(self, seed: int) -> Any:
        return self.env.reset(seed=seed)

    def step(self, action: np.ndarray) -> Any:
        start = time.perf_counter()
        out = self.env.step(action)
        self.seconds.append(time.perf_counter() - start)
        return out
