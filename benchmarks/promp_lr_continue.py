"""Would a smaller outer learning rate let a levelled-off ProMP run climb again? From a ProMP
run's latest checkpoint, continue training for a number of iterations once per learning rate
(the same checkpoint, Adam moments and random state each time, so every arm samples its first
iteration from the same tasks and seeds), and print each arm's training returns and how often
its outer surrogate ended below its start.

    python benchmarks/promp_lr_continue.py RUN_DIR [--lrs 1e-3 1e-5] [--iterations 100]
        [--block 20]

Each arm is the run's own config with `lr` replaced (`mql.algos.maml.config.ProMPConfig`);
nothing is written to the run directory. The returns are the iterations' pre- and post-update
training returns (40 tasks x 20 rollouts at the preset), averaged over blocks of `--block`
iterations; "surrogate < 0" counts the iterations whose clipped surrogate, as logged after four
of the five Adam steps, was below its value at the sampling parameters (0).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from mql import checkpoint, runs
from mql.algos import registry
from mql.algos.maml.config import ProMPConfig
from mql.errors import RunDirError


def continue_run(cfg: ProMPConfig, state: dict, iterations: int) -> list[dict[str, float]]:
    """`iterations` training iterations from the checkpoint `state` under `cfg`; their metrics."""
    agent = registry.make_agent(cfg, state)
    try:
        return [agent.run_iteration() for _ in range(iterations)]
    finally:
        agent.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a ProMP run directory")
    p.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 1e-5])
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--block", type=int, default=20, help="iterations per row")
    ns = p.parse_args(argv)
    try:
        if ns.iterations < 1 or ns.block < 1 or min(ns.lrs) <= 0:
            raise ValueError("--iterations and --block must be >= 1 and every lr > 0")
        cfg = runs.read_config(ns.run)
        if not isinstance(cfg, ProMPConfig):
            raise ValueError(f"{ns.run} is a {cfg.algo} run, not a ProMP one")
        if not (ns.run / runs.CHECKPOINT).is_file():
            raise ValueError(f"{ns.run} has no {runs.CHECKPOINT}")
    except (ValueError, OSError, RunDirError) as e:
        print(f"promp_lr_continue: error: {e}", file=sys.stderr)
        return 2
    state = checkpoint.load(ns.run / runs.CHECKPOINT)["algo"]
    print(f"{ns.run.name}, continued from {int(state['env_steps']):,} environment steps\n")
    print("| lr | iterations | pre-update | post-update | surrogate < 0 |")
    print("|---:|---|---:|---:|---:|")
    for lr in ns.lrs:
        rows = continue_run(dataclasses.replace(cfg, lr=lr), state, ns.iterations)
        for a in range(0, len(rows), ns.block):
            part = rows[a : a + ns.block]
            pre = sum(r["train/return_pre"] for r in part) / len(part)
            post = sum(r["train/return_step1"] for r in part) / len(part)
            below = sum(r["losses/surrogate"] < 0 for r in part)
            span = f"{a + 1}-{a + len(part)}"
            print(f"| {lr:g} | {span} | {pre:.1f} | {post:.1f} | {below} of {len(part)} |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
