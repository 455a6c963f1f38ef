"""Does ProMP's outer update still climb its own objective? Two probes from a ProMP run's latest
checkpoint; neither writes to the run directory.

    python benchmarks/promp_outer_steps.py RUN_DIR [--variants carried:1e-3 fresh:1e-4 sgd:1e-2]
        [--steps 6] [--batches 2]
    python benchmarks/promp_outer_steps.py RUN_DIR --continue-lrs 1e-3 1e-5
        [--iterations 100] [--block 20]

Steps (the default): sample iterations as training does (`MetaGradientAgent.sample_iteration`),
then take Adam (or SGD) steps on each batch and print ProMP's clipped surrogate before each
step. A variant is OPTIMIZER:LR: `carried` is Adam with the checkpoint's own moment estimates
(what the run's next update would do, at that learning rate), `fresh` Adam from new moments,
`sgd` plain gradient steps. Each step is one call of ProMP's update with one Adam step
(`mql.algos.maml.outer.make_promp_update`), so the KL term's reference (the sampling policy's
outputs) moves to each step's parameters; at the preset's eta = 5e-4 that term weighs nothing
against the surrogate's changes. At the sampling parameters the surrogate is the mean of the
normalised advantages, 0; an update that helps takes it above 0, and small enough steps along
the gradient must.

Continue (`--continue-lrs`): train on from the checkpoint for `--iterations` iterations once
per learning rate (the run's config with `lr` replaced; the same checkpoint, Adam moments and
random state each time, so every arm samples its first iteration from the same tasks and
seeds), and print each arm's pre- and post-update training returns (40 tasks x 20 rollouts at
the preset) per block of `--block` iterations, and how many iterations' surrogate, as logged
after four of the five Adam steps, ended below its value at the sampling parameters (0).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import optax

from mql import checkpoint, runs
from mql.algos import registry
from mql.algos.maml.config import ProMPConfig
from mql.algos.maml.outer import ProMPSettings, make_promp_update
from mql.errors import RunDirError

LABELS = {"carried": "Adam, the run's moments", "fresh": "Adam, new moments", "sgd": "SGD"}


def optimizer(kind: str, lr: float) -> optax.GradientTransformation:
    return optax.sgd(lr) if kind == "sgd" else optax.adam(lr)


def parse_variant(text: str) -> tuple[str, float]:
    kind, _, lr = text.partition(":")
    if kind not in ("carried", "fresh", "sgd") or not lr:
        raise ValueError(f"a variant is carried|fresh|sgd:LR, got {text!r}")
    if float(lr) <= 0:
        raise ValueError(f"the learning rate must be > 0, got {text!r}")
    return kind, float(lr)


def step_table(cfg: ProMPConfig, state: dict[str, Any], ns: argparse.Namespace) -> None:
    """The surrogate before each of `ns.steps` steps per variant, on `ns.batches` batches."""
    variants = [parse_variant(v) for v in ns.variants]
    agent = registry.make_agent(cfg, state)
    settings = ProMPSettings(cfg.clip, 1, False, cfg.target_inner_kl)
    updates = {
        v: make_promp_update(agent.apply_fn, agent.inner, optimizer(*v), settings) for v in variants
    }
    print("the clipped surrogate before each step:\n")
    print("| batch | optimizer | lr | " + " | ".join(f"step {k}" for k in range(ns.steps)) + " |")
    print("|---|---|---:|" + "---:|" * ns.steps)
    for b in range(ns.batches):
        it = agent.sample_iteration()
        for kind, lr in variants:
            meta = agent.state
            if kind != "carried":
                meta = meta._replace(opt_state=optimizer(kind, lr).init(meta.params))
            values = []
            for _ in range(ns.steps):
                meta, metrics = updates[(kind, lr)](meta, it.pre, it.post, it.post_score)
                values.append(float(metrics["losses/surrogate"]))
            cells = " | ".join(f"{v:+.4f}" for v in values)
            print(f"| {b} | {LABELS[kind]} | {lr:g} | {cells} |")
        sys.stdout.flush()
    agent.close()


def continue_table(cfg: ProMPConfig, state: dict[str, Any], ns: argparse.Namespace) -> None:
    """Training returns and surrogates below 0 per block, continuing once per learning rate."""
    print("| lr | iterations | pre-update | post-update | surrogate < 0 |")
    print("|---:|---|---:|---:|---:|")
    for lr in ns.continue_lrs:
        agent = registry.make_agent(dataclasses.replace(cfg, lr=lr), state)
        try:
            rows = [agent.run_iteration() for _ in range(ns.iterations)]
        finally:
            agent.close()
        for a in range(0, len(rows), ns.block):
            part = rows[a : a + ns.block]
            pre = sum(r["train/return_pre"] for r in part) / len(part)
            post = sum(r["train/return_step1"] for r in part) / len(part)
            below = sum(r["losses/surrogate"] < 0 for r in part)
            span = f"{a + 1}-{a + len(part)}"
            print(f"| {lr:g} | {span} | {pre:.1f} | {post:.1f} | {below} of {len(part)} |")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a ProMP run directory")
    p.add_argument("--variants", nargs="+", default=["carried:1e-3", "fresh:1e-4", "fresh:1e-5"])
    p.add_argument("--steps", type=int, default=6, help="steps per batch and variant")
    p.add_argument("--batches", type=int, default=2, help="iterations' batches to sample")
    p.add_argument("--continue-lrs", nargs="+", type=float, default=None, metavar="LR")
    p.add_argument("--iterations", type=int, default=100, help="with --continue-lrs")
    p.add_argument("--block", type=int, default=20, help="with --continue-lrs: rows' iterations")
    ns = p.parse_args(argv)
    try:
        for v in ns.variants:
            parse_variant(v)
        if min(ns.steps, ns.batches, ns.iterations, ns.block) < 1:
            raise ValueError("--steps, --batches, --iterations and --block must be >= 1")
        if ns.continue_lrs is not None and min(ns.continue_lrs) <= 0:
            raise ValueError("every --continue-lrs rate must be > 0")
        cfg = runs.read_config(ns.run)
        if not isinstance(cfg, ProMPConfig):
            raise ValueError(f"{ns.run} is a {cfg.algo} run, not a ProMP one")
        if not (ns.run / runs.CHECKPOINT).is_file():
            raise ValueError(f"{ns.run} has no {runs.CHECKPOINT}")
    except (ValueError, OSError, RunDirError) as e:
        print(f"promp_outer_steps: error: {e}", file=sys.stderr)
        return 2
    state = checkpoint.load(ns.run / runs.CHECKPOINT)["algo"]
    print(f"{ns.run.name} at {int(state['env_steps']):,} environment steps; ", end="")
    if ns.continue_lrs is None:
        step_table(cfg, state, ns)
    else:
        print(f"continued {ns.iterations} iterations per learning rate\n")
        continue_table(cfg, state, ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
