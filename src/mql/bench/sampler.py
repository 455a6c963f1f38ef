"""The on-policy sampler measured against the machine's raw MuJoCo step rate (`mql bench
--sampler`).

For each family, in alternating rounds in one process (the machine may be shared):

- raw: a plain `mujoco.mj_step(model, data, nstep=frame_skip)` loop on one thread, uniform
  random controls, on the family's own model: environment steps/s (one environment step is
  `frame_skip` physics steps), the ceiling of a single core;
- env: the family's own `env.step` on one environment, same controls, resetting at episode
  ends: what the Python environment costs above raw MuJoCo;
- sampler: `mql.onpolicy.sampler.Sampler` stepping `n_envs` environments for one trial of
  `episodes` episodes, with RL2's recurrent policy (GRU 64; its sampling step as the agent runs
  it, in NumPy at the preset's `sampler_policy`) called once per time step for all of them, in
  its default layout (the half-cheetah on MuJoCo's thread pool, one thread per core in one
  process; the others one process per core) and on one core (one process, one thread):
  environment steps/s, and the share of the wall time spent in policy inference;
- one RL2 iteration at the preset's settings (`meta_batch` trials): the shares of sampling,
  advantages and the PPO update.
"""

from __future__ import annotations

import time
from statistics import median
from typing import Any

import jax
import mujoco
import numpy as np

import mql.envs
from mql.algos import registry
from mql.onpolicy.sampler import Sampler
from mql.onpolicy.types import PolicyInputs

__all__ = [
    "env_step_rate",
    "iteration_shares",
    "markdown_sampler",
    "measure_sampler",
    "raw_step_rate",
    "sampler_round",
]


def raw_step_rate(env_name: str, steps: int = 20_000) -> float:
    """Environment steps/s of a plain single-thread `mj_step` loop on the family's model."""
    env = mql.envs.make(env_name, seed=0)
    model, frame_skip = env.unwrapped.model, int(env.unwrapped.frame_skip)
    data = mujoco.MjData(model)
    controls = np.random.default_rng(0).uniform(*model.actuator_ctrlrange.T, size=(1000, model.nu))
    start = time.perf_counter()
    for t in range(steps):
        data.ctrl[:] = controls[t % 1000]
        mujoco.mj_step(model, data, nstep=frame_skip)
        if t % 1000 == 999:
            mujoco.mj_resetData(model, data)
    return steps / (time.perf_counter() - start)


def env_step_rate(env_name: str, steps: int = 20_000) -> float:
    """Environment steps/s of the family's `env.step` on one environment (random actions)."""
    env = mql.envs.make(env_name, seed=0)
    env.set_task(env.train_tasks[0])
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, size=(1000, *env.action_space.shape))
    start = time.perf_counter()
    for t in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[t % 1000])
        if terminated or truncated:
            env.reset(seed=t)
    return steps / (time.perf_counter() - start)


def _policy_step(agent: Any, n: int) -> tuple[Any, Any, list[float]]:
    """RL2's sampling step for `n` slots as the agent runs it (`RL2.sampling_policy`), timing
    every call: (step function, first carry, the calls' times)."""
    act, carry = agent.sampling_policy(n, jax.random.PRNGKey(0))
    spent: list[float] = []

    def step_fn(c: Any, inputs: PolicyInputs) -> tuple[np.ndarray, np.ndarray, Any]:
        t0 = time.perf_counter()
        action, logp, c = act(c, inputs)
        spent.append(time.perf_counter() - t0)
        return action, logp, c

    return step_fn, carry, spent


def sampler_round(agent: Any, sampler: Sampler, episodes: int) -> tuple[float, float]:
    """One trial of `episodes` episodes in every slot with RL2's policy: (environment steps/s,
    share of the wall time in policy inference)."""
    n = sampler.n_envs
    tasks = [agent.train_tasks[i % len(agent.train_tasks)] for i in range(n)]
    seeds = np.arange(n * episodes).reshape(n, episodes)
    step_fn, carry, spent = _policy_step(agent, n)
    start = time.perf_counter()
    traj, _ = sampler.sample(tasks, seeds, step_fn, carry)
    wall = time.perf_counter() - start
    return traj.steps / wall, sum(spent) / wall


def layout(sampler: Sampler) -> str:
    """How a sampler spreads its environments: "2 processes", "1 process x 2 threads", ..."""
    p = sampler.processes
    procs = f"{p} process{'es' if p > 1 else ''}"
    return f"{procs} x {sampler.threads} threads" if sampler.threads > 1 else procs


def measure_sampler(
    env_name: str, n_envs: int = 100, episodes: int = 1, rounds: int = 3, raw_steps: int = 20_000
) -> dict[str, Any]:
    """Raw, the sampler in its default layout and on one core, inference shares; medians over
    rounds."""
    cfg = registry.resolve(env_name, "rl2", meta_batch=n_envs, episodes_per_trial=episodes)
    agent = registry.make_agent(cfg)
    samplers = {
        "sampler": Sampler(env_name, 0, n_envs),
        "single": Sampler(env_name, 0, n_envs, processes=1, threads=1),
    }
    try:
        for s in samplers.values():  # compile and warm up
            sampler_round(agent, s, 1)
        raw, env_rate = [], []
        rate, share = {p: [] for p in samplers}, {p: [] for p in samplers}
        for _ in range(rounds):
            raw.append(raw_step_rate(env_name, raw_steps))
            env_rate.append(env_step_rate(env_name, raw_steps))
            for p, s in samplers.items():
                r, f = sampler_round(agent, s, episodes)
                rate[p].append(r)
                share[p].append(f)
    finally:
        for s in samplers.values():
            s.close()
        agent.close()
    out: dict[str, Any] = {
        "env": env_name,
        "n_envs": n_envs,
        "episodes": episodes,
        "raw_steps_per_s": median(raw),
        "env_steps_per_s": median(env_rate),
        "layout": layout(samplers["sampler"]),
    }
    for p in samplers:
        out[f"{p}_steps_per_s"] = median(rate[p])
        out[f"{p}_inference_share"] = median(share[p])
        out[f"{p}_vs_raw"] = median(rate[p]) / median(raw)
    return out


def iteration_shares(env_name: str, iterations: int = 2) -> dict[str, float]:
    """Shares of one RL2 iteration at the preset's settings (after a first, compiling one)."""
    agent = registry.make_agent(registry.resolve(env_name, "rl2"))
    try:
        agent.run_iteration()
        parts = {"sample": [], "advantages": [], "update": [], "total": []}
        for _ in range(iterations):
            m = agent.run_iteration()
            parts["sample"].append(m["time/sample_s"])
            parts["advantages"].append(m["time/advantages_s"])
            parts["update"].append(m["time/update_s"])
            parts["total"].append(m["time/iteration_s"])
    finally:
        agent.close()
    total = median(parts["total"])
    return {
        "iteration_s": total,
        "steps": agent.cfg.meta_batch * agent.cfg.episodes_per_trial * agent.horizon,
        **{f"{k}_share": median(v) / total for k, v in parts.items() if k != "total"},
    }


def markdown_sampler(rows: list[dict[str, Any]]) -> str:
    """The sampler table."""
    head = (
        "| family | slots x episodes | raw mj_step, 1 thread | env.step, 1 env "
        "| sampler (layout) | vs raw | inference share | sampler, 1 core | vs raw "
        "| RL2 iteration: sample / advantages / PPO update |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        it = r.get("iteration")
        split = (
            f"{it['sample_share']:.0%} / {it['advantages_share']:.0%} / {it['update_share']:.0%}"
            f" of {it['iteration_s']:.1f} s"
            if it
            else "-"
        )
        lines.append(
            f"| {r['env']} | {r['n_envs']} x {r['episodes']} | {r['raw_steps_per_s']:,.0f}/s "
            f"| {r['env_steps_per_s']:,.0f}/s "
            f"| {r['sampler_steps_per_s']:,.0f}/s ({r['layout']}) | {r['sampler_vs_raw']:.2f}x "
            f"| {r['sampler_inference_share']:.0%} | {r['single_steps_per_s']:,.0f}/s "
            f"| {r['single_vs_raw']:.2f}x | {split} |"
        )
    return "\n".join(lines)
