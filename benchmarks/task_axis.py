"""The eq. 19 update of T tasks: one task at a time against one compiled call over a task axis.

    python benchmarks/task_axis.py [--env cheetah-vel] [--tasks 5] [--updates 10] [--rounds 3]

Per round, on the same pre-staged minibatches (batch `eq19_batch`, `--updates` per task):
`TD3.update_many` task after task, then `mql.algos.mql.batched.task_updates` with `lax.map`
and with `vmap` over the tasks; prints seconds and the ratio to one at a time (> 1: faster),
and the largest parameter difference of each form from one at a time. What the batched
evaluation's choice of `lax.map` on a CPU rests on (docs/performance.md, "Evaluation").
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from mql.algos.mql.agent import MQL
from mql.algos.mql.batched import stack_states, task_updates
from mql.bench.learner import learner_config
from mql.bench.memory import fill_random
from mql.offpolicy.td3 import Anchor


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--env", default="cheetah-vel")
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = dataclasses.replace(learner_config(args.env), replay_size=20_000)
    agent = MQL(cfg)
    fill_random(agent.replay, 20_000, agent.env.horizon)
    td3, meta = agent.td3, agent.state
    n_tasks, k, b = args.tasks, args.updates, cfg.eq19_batch
    rng = np.random.default_rng(0)
    batches = [
        agent.replay.gather_packed(agent.replay.sample_indices(rng, k * b)).stacked(k)
        for _ in range(n_tasks)
    ]
    weights = [rng.uniform(0.0, cfg.beta_clip, (k, b)).astype(np.float32) for _ in batches]
    lams = [0.1 * (j + 1) for j in range(n_tasks)]
    start = td3.fresh_optimizers(meta, cfg.lr)

    def one_at_a_time() -> list:
        out = []
        for batch, w, lam in zip(batches, weights, lams, strict=True):
            anchor = Anchor(meta.actor, meta.critic, jnp.asarray(lam, jnp.float32))
            out.append(td3.update_many(start, batch, w, anchor)[0])
        return jax.block_until_ready(out)

    stacked = stack_states([start] * n_tasks)
    all_batches = jax.device_put(jax.tree_util.tree_map(lambda *x: np.stack(x), *batches))
    all_weights, coefs = np.stack(weights), jnp.asarray(lams, jnp.float32)

    def over_tasks(axis: str):
        fn = task_updates(td3, axis)  # type: ignore[arg-type]
        return lambda: jax.block_until_ready(
            fn(stacked, all_batches, all_weights, meta.actor, meta.critic, coefs)[0]
        )

    forms = {"one at a time": one_at_a_time, "lax.map": over_tasks("map")}
    forms["vmap"] = over_tasks("vmap")
    results = {name: f() for name, f in forms.items()}  # compile
    ref = results["one at a time"]
    for name in ("lax.map", "vmap"):
        diff = max(
            float(jnp.max(jnp.abs(x - y[j])))
            for j in range(n_tasks)
            for x, y in zip(
                jax.tree_util.tree_leaves((ref[j].actor, ref[j].critic)),
                jax.tree_util.tree_leaves((results[name].actor, results[name].critic)),
                strict=True,
            )
        )
        print(f"{name}: largest parameter difference from one at a time {diff:.1e}")
    seconds: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.rounds):
        for name, f in forms.items():
            t0 = time.perf_counter()
            f()
            seconds[name].append(time.perf_counter() - t0)
    base = np.asarray(seconds["one at a time"])
    for name, s in seconds.items():
        ratio = np.median(base / np.asarray(s))
        print(f"{name}: median {np.median(s):.2f} s, {ratio:.2f}x one at a time")


if __name__ == "__main__":
    main()
