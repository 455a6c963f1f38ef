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
- RL2: the sampler with RL2's GRU policy called once per time step, as `mql bench --sampler`
  runs it (its NumPy sampling step, the default `sampler_policy`);
- RL2, compiled step: the same with the jit-compiled step (`sampler_policy="jax"`).

    python benchmarks/sampler_ceiling.py [--env cheetah-vel] [--slots 100 800] [--rounds 3]

Needs MuJoCo 4 (`mujoco.batch`) and a family stepped on its thread pool (the half-cheetah).
"""

from __future__ import annotations

import argparse
import time
from itertools import count
from statistics import median
from typing import Any

import numpy as np

import mql.envs
from mql.algos import registry
from mql.bench.sampler import raw_step_rate, sampler_round
from mql.envs.locomotion_batch import integration_state
from mql.onpolicy.sampler import Sampler, pools_physics


def pool_rate(env_name: str, n: int, threads: int, steps: int) -> float:
    """Environment steps/s of `n` simulations stepped together on `threads` threads."""
    from mujoco.batch import Batch

    env = mql.envs.make(env_name, seed=0)
    model, frame_skip = env.unwrapped.model, int(env.unwrapped.frame_skip)
    pool = Batch(model, nsim=n, nthread=threads)
    env.reset(seed=0)
    state = integration_state(model, env.unwrapped.data)
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


def free_policy_rate(sampler: Sampler, agent: Any) -> float:
    """Environment steps/s of one episode in every slot with uniform random actions drawn
    beforehand (as the raw loop's and the pool's controls): a policy that costs nothing."""
    n, act_dim = sampler.n_envs, sampler.act_dim
    tasks = [agent.train_tasks[i % len(agent.train_tasks)] for i in range(n)]
    actions = np.random.default_rng(0).uniform(-1, 1, (sampler.horizon, n, act_dim))
    actions, zeros, t = actions.astype(np.float32), np.zeros(n, np.float32), count()
    start = time.perf_counter()
    traj, _ = sampler.sample(
        tasks, np.arange(n).reshape(n, 1), lambda c, _: (actions[next(t)], zeros, c), None
    )
    return traj.steps / (time.perf_counter() - start)


def table_row(n: int, m: dict[str, float]) -> str:
    """One markdown row from the median rates `m` (raw, pool, free, rl2, rl2_jax)."""
    keys = ("pool", "free", "rl2", "rl2_jax")
    cells = [f"{m[k]:,.0f}/s ({m[k] / m['raw']:.2f}x)" for k in keys]
    ms = " / ".join(f"{n / m[k] * 1e3:.2f}" for k in keys)
    return f"| {n} | {m['raw']:,.0f}/s | {' | '.join(cells)} | {ms} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="cheetah-vel")
    parser.add_argument("--slots", type=int, nargs="+", default=[100, 800])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not pools_physics(args.env):
        raise SystemExit(f"{args.env}: not stepped on MuJoCo's thread pool here (needs MuJoCo 4)")
    for i, n in enumerate(args.slots):
        agent = registry.make_agent(registry.resolve(args.env, "rl2", meta_batch=n))
        compiled = registry.make_agent(
            registry.resolve(args.env, "rl2", meta_batch=n, sampler_policy="jax")
        )
        sampler = Sampler(args.env, 0, n)
        if i == 0:  # the pool runs on the sampler's threads (one per core)
            print(f"| slots | raw, 1 thread | pool physics, {sampler.threads} threads "
                  "| sampler, free policy | sampler, RL2 GRU (NumPy step) "
                  "| sampler, RL2 GRU (compiled step) "
                  "| ms per time step: pool / free / RL2 / RL2 compiled |")  # fmt: skip
            print("|---|---|---|---|---|---|---|")
        rates: dict[str, list[float]] = {k: [] for k in ("raw", "pool", "free", "rl2", "rl2_jax")}
        try:
            sampler_round(agent, sampler, 1)  # warm up
            sampler_round(compiled, sampler, 1)  # compile
            for _ in range(args.rounds):
                rates["raw"].append(raw_step_rate(args.env, 20_000))
                steps = max(20_000 // n, 50)
                rates["pool"].append(pool_rate(args.env, n, sampler.threads, steps))
                rates["free"].append(free_policy_rate(sampler, agent))
                rates["rl2"].append(sampler_round(agent, sampler, 1)[0])
                rates["rl2_jax"].append(sampler_round(compiled, sampler, 1)[0])
        finally:
            sampler.close()
            agent.close()
            compiled.close()
        print(table_row(n, {k: median(v) for k, v in rates.items()}))


if __name__ == "__main__":
    main()
