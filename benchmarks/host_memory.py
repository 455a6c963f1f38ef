"""Host-memory costs around the update: minibatch staging and per-call XLA buffers.

    python benchmarks/host_memory.py [--preset humanoid-dir] [--rounds 5]

Prints two tables for one preset (docs/performance.md, change 7 and the page-fault row of
"Tried, not adopted"):

1. `update_many` per update and minor page faults per update for chunks of 1, 2, 5 and 50
   updates per call (one host sync per call, as `MQL._updates` makes).
2. `MQL.train` updates/s, sampling included, on a 100,000-transition buffer: minibatches staged
   in reused aligned memory (`mql.offpolicy.staging.BatchStaging`, what `MQL` does) against
   fresh arrays per call copied by `jax.device_put` (the previous path), in alternating rounds.

Table 1 shows the cost that remains per call: XLA's buffers for a call are fresh memory from the
kernel (page faults), so calls of few updates cost more per update.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Any

import jax
import numpy as np

from mql.algos.mql.agent import MQL
from mql.bench.learner import learner_config, prepared_learner
from mql.bench.memory import fill_random
from mql.offpolicy.replay import ReplayBuffer

CHUNKS = (1, 2, 5, 50)


class FreshArrays:
    """The previous minibatch path: a fresh gather per call, copied by `jax.device_put`."""

    def stage(self, buffer: ReplayBuffer, indices: list[np.ndarray]) -> tuple[Any, Any]:
        host = buffer.gather_packed(np.concatenate(indices)).stacked(len(indices))
        return host, jax.device_put(host)

    def consumed_by(self, outputs: Any) -> None:
        del outputs


def staging_table(env: str, rounds: int) -> list[str]:
    agent = MQL(learner_config(env))
    fill_random(agent.replay, 100_000, agent.env.horizon)
    paths = {"staged (MQL)": agent._staging, "fresh arrays": FreshArrays()}
    n = 2 * agent.cfg.updates_per_call
    agent.train(n)  # compiles
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(rounds):
        for name in list(paths) if r % 2 == 0 else list(paths)[::-1]:
            agent._staging = paths[name]
            start = time.perf_counter()
            agent.train(n)
            rates[name].append(n / (time.perf_counter() - start))
    base = float(np.median(rates["fresh arrays"]))
    lines = ["| minibatches | updates/s incl. sampling | vs fresh |", "|---|---:|---:|"]
    for name, values in rates.items():
        med = float(np.median(values))
        lines.append(f"| {name} | {med:.1f} | {med / base:.2f}x |")
    return lines


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def chunk_table(env: str) -> list[str]:
    agent, (batches, weights, anchor) = prepared_learner(env)
    td3, state = agent.td3, agent.state
    slices = {k: jax.tree_util.tree_map(lambda x, k=k: x[:k], (batches, weights)) for k in CHUNKS}
    for k in CHUNKS:  # compile each chunk size
        state, _ = td3.update_many(state, *slices[k], anchor)
    jax.block_until_ready(state)
    lines = [
        "| updates per call | ms per update | minor page faults per update |",
        "|---:|---:|---:|",
    ]
    for k in CHUNKS:
        calls = max(2, 50 // k)
        faults, start = _minor_faults(), time.perf_counter()
        for _ in range(calls):
            state, metrics = td3.update_many(state, *slices[k], anchor)
            float(metrics["critic_loss"])  # one host sync per call, as in MQL._updates
        per = (time.perf_counter() - start) / (calls * k)
        lines.append(f"| {k} | {per * 1e3:.1f} | {(_minor_faults() - faults) / (calls * k):,.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--preset", default="humanoid-dir", help="environment preset")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (table 1)")
    args = parser.parse_args(argv)
    print(args.preset)
    print("\n".join(chunk_table(args.preset)))
    print()
    print("\n".join(staging_table(args.preset, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
