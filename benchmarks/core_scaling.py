"""How the MQL update uses one core, and what the second core adds.

    python benchmarks/core_scaling.py [--env cheetah-vel] [--rounds 5] [--calls 2]
                                      [--cores 1 2] [--gru-kernel auto]

Utilisation (mql bench) mixes two things: how close the update's kernels come to the peak of
the core they run on, and how well XLA spreads one update over the cores. This script separates
them. For each core count it starts a fresh process pinned to that many CPUs (before JAX starts,
so XLA sizes its thread pool to them), measures the dense-matmul peak there (`mql.bench`'s
1024³ matmul) and the update rate on the same batches, and prints:

- utilisation with N cores = FLOPs/update x updates/s / (peak with N cores);
- scaling = updates/s with N cores / updates/s with one core.

FLOPs per update are counted as in `mql bench` (XLA's cost analysis of the XLA-GRU build).
Linux only (CPU affinity). Each process reports the best peak of its run and the median of
`--rounds` timings of `--calls` compiled calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: int(sys.argv[1])]))
import numpy as np
from mql.bench.flops import update_flops
from mql.bench.learner import prepared_learner
from mql.bench.timing import matmul_gflops, time_updates
env, rounds, calls, kernel = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
agent, dev = prepared_learner(env, replay_size=20_000, gru_kernel=kernel)
flops = update_flops(agent.td3, agent.state, *dev)["per_update"]
state, _, _ = time_updates(agent.td3, agent.state, dev, 1)  # compiled and warm
rates, peaks = [], []
for _ in range(rounds):
    peaks.append(matmul_gflops())
    state, rate, _ = time_updates(agent.td3, state, dev, calls)
    rates.append(rate)
print(json.dumps({"cores": len(os.sched_getaffinity(0)), "peak": max(peaks),
                  "updates_per_s": float(np.median(rates)), "flops": flops}))
"""


def measure(cores: int, env: str, rounds: int, calls: int, kernel: str) -> dict:
    args = [sys.executable, "-c", CHILD, str(cores), env, str(rounds), str(calls), kernel]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"core_scaling: the {cores}-core run failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="cheetah-vel")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=2)
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    p.add_argument("--gru-kernel", default="auto", choices=("xla", "native", "auto"))
    ns = p.parse_args(argv)
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("core_scaling: needs CPU affinity (Linux)")
    available = len(os.sched_getaffinity(0))
    if max(ns.cores) > available or min(ns.cores) < 1:
        raise SystemExit(f"core_scaling: --cores must be within 1..{available}")
    rows = [measure(c, ns.env, ns.rounds, ns.calls, ns.gru_kernel) for c in ns.cores]
    base = rows[0]["updates_per_s"]
    print(f"{ns.env}, gru_kernel={ns.gru_kernel}, {rows[0]['flops'] / 1e6:.1f} MFLOP/update")
    print("| cores | matmul peak GFLOP/s | updates/s | utilisation | scaling |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        util = r["flops"] * r["updates_per_s"] / (r["peak"] * 1e9)
        print(f"| {r['cores']} | {r['peak']:.1f} | {r['updates_per_s']:.1f} | {util:.0%} | "
              f"{r['updates_per_s'] / base:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
