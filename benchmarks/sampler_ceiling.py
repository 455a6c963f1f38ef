"""What bounds the on-policy sampler on a half-cheetah family: its rate against the raw
single-thread `mj_step` loop, next to the two ceilings below it, in alternating rounds in one
process (medians):

- raw: `mql.bench.sampler.raw_step_rate` (one environment, one thread; the 1.0x of the table);
- pool: the physics alone, `mujoco.batch` stepping N simulations of the family's model on a
  thread per core with random controls (no copies, no observations, no policy, no Python per
  step but the call): what stepping N environments on this machine's cores can reach;
- free policy: the sampler (`mql.onpolicy.sampler.Sampler`, default layout) with a policy that
  costs nothing (random actions drawn beforehand): the physics plus the stepper's copies,
  observations and rewards and the sampler's bookkeeping;
- RL2: the sampler with RL2's jit-compiled GRU policy called once per time step, as `mql bench
  --sampler` runs it.

    python benchmarks/sampler_ceiling.py [--env cheetah-vel] [--slots 100 800] [--rounds 3]

Needs MuJoCo 4 (`mujoco.batch`) and a family stepped on its thread pool (the half-cheetah).
"""

from __future__ import annotations

import argparse
import os
import time
from itertools import count
from statistics import median

import jax
import mujoco
import numpy as np

import mql.envs
from mql.algos import registry
from mql.bench.sampler import raw_step_rate, timed_policy_step
from mql.onpolicy.sampler import Sampler, pools_physics


def pool_rate(env_name: str, n: int, threads: int, steps: int) -> float:
    """Environment steps/s of `n` simulations stepped together on `threads` threads."""
    from mujoco.batch import Batch

    env = mql.envs.make(env_name, seed=0)
    model, frame_skip = env.unwrapped.model, int(env.unwrapped.frame_skip)
    pool = Batch(model, nsim=n, nthread=threads)
    env.reset(seed=0)
    state = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_INTEGRATION))
    mujoco.mj_getState(model, env.unwrapped.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    for i in range(n):
        pool.state[i] = state
    ctrl = pool.bind("ctrl")
    controls = np.random.default_rng(0).uniform(-1.0, 1.0, size=(16, *ctrl.shape))
    pool.step(None, nstep=frame_skip)
    start = time.perf_counter()
    for t in range(steps):
        ctrl[:] = controls[t % 16]
        pool.step(None, nstep=frame_skip)
    return n * steps / (time.perf_counter() - start)


def sampler_rate(sampler: Sampler, agent: object, free: bool) -> float:
    n, act_dim = sampler.n_envs, sampler.act_dim
    tasks = [agent.train_tasks[i % len(agent.train_tasks)] for i in range(n)]  # type: ignore[attr-defined]
    seeds = np.arange(n).reshape(n, 1)
    if free:  # uniform random actions drawn beforehand, as the raw loop's and the pool's
        actions = np.random.default_rng(0).uniform(-1, 1, (sampler.horizon, n, act_dim))
        actions, zeros, t = actions.astype(np.float32), np.zeros(n, np.float32), count()
        step_fn, carry = (lambda c, _: (actions[next(t)], zeros, c)), None
    else:
        step_fn, _ = timed_policy_step(agent)
        carry = (agent.module.initial_carry(n), jax.random.PRNGKey(0))  # type: ignore[attr-defined]
    start = time.perf_counter()
    traj, _ = sampler.sample(tasks, seeds, step_fn, carry)
    return traj.steps / (time.perf_counter() - start)


def table_row(n: int, m: dict[str, float]) -> str:
    """One markdown row from the median rates `m` (raw, pool, free, rl2)."""
    cells = [f"{m[k]:,.0f}/s ({m[k] / m['raw']:.2f}x)" for k in ("pool", "free", "rl2")]
    ms = " / ".join(f"{n / m[k] * 1e3:.2f}" for k in ("pool", "free", "rl2"))
    return f"| {n} | {m['raw']:,.0f}/s | {' | '.join(cells)} | {ms} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="cheetah-vel")
    parser.add_argument("--slots", type=int, nargs="+", default=[100, 800])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not pools_physics(args.env):
        raise SystemExit(f"{args.env}: not stepped on MuJoCo's thread pool here (needs MuJoCo 4)")
    threads = len(os.sched_getaffinity(0))
    print(f"| slots | raw, 1 thread | pool physics, {threads} threads | sampler, free policy "
          "| sampler, RL2 GRU | ms per time step: pool / free / RL2 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for n in args.slots:
        agent = registry.make_agent(registry.resolve(args.env, "rl2", meta_batch=n))
        sampler = Sampler(args.env, 0, n)
        rates: dict[str, list[float]] = {"raw": [], "pool": [], "free": [], "rl2": []}
        try:
            sampler_rate(sampler, agent, free=False)  # compile, warm up
            for _ in range(args.rounds):
                rates["raw"].append(raw_step_rate(args.env, 20_000))
                rates["pool"].append(pool_rate(args.env, n, threads, max(20_000 // n, 50)))
                rates["free"].append(sampler_rate(sampler, agent, free=True))
                rates["rl2"].append(sampler_rate(sampler, agent, free=False))
        finally:
            sampler.close()
            agent.close()  # type: ignore[attr-defined]
        print(table_row(n, {k: median(v) for k, v in rates.items()}))


if __name__ == "__main__":
    main()
