"""Does ProMP's outer update still climb its own objective? From a ProMP run's latest
checkpoint, sample iterations as training does (`MetaGradientAgent.sample_iteration`), then take
Adam (or SGD) steps on each batch and print ProMP's clipped surrogate before each step.

    python benchmarks/promp_outer_steps.py RUN_DIR [--variants carried:1e-3 fresh:1e-4 sgd:1e-2]
        [--steps 6] [--batches 2]

A variant is OPTIMIZER:LR: `carried` is Adam with the checkpoint's own moment estimates (what
the run's next update would do, at that learning rate), `fresh` Adam from new moments, `sgd`
plain gradient steps. Each step is one call of ProMP's update with one Adam step
(`mql.algos.maml.outer.make_promp_update`), so the KL term's reference (the sampling policy's
outputs) moves to each step's parameters; at the preset's eta = 5e-4 that term weighs nothing
against the surrogate's changes. At the sampling parameters the surrogate is the mean of the
normalised advantages, 0; an update that helps takes it above 0, and small enough steps along
the gradient must.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a ProMP run directory")
    p.add_argument("--variants", nargs="+", default=["carried:1e-3", "fresh:1e-4", "fresh:1e-5"])
    p.add_argument("--steps", type=int, default=6, help="steps per batch and variant")
    p.add_argument("--batches", type=int, default=2, help="iterations' batches to sample")
    ns = p.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in ns.variants]
        if ns.steps < 1 or ns.batches < 1:
            raise ValueError("--steps and --batches must be >= 1")
        cfg = runs.read_config(ns.run)
        if not isinstance(cfg, ProMPConfig):
            raise ValueError(f"{ns.run} is a {cfg.algo} run, not a ProMP one")
        if not (ns.run / runs.CHECKPOINT).is_file():
            raise ValueError(f"{ns.run} has no {runs.CHECKPOINT}")
    except (ValueError, OSError, RunDirError) as e:
        print(f"promp_outer_steps: error: {e}", file=sys.stderr)
        return 2
    agent = registry.make_agent(cfg, checkpoint.load(ns.run / runs.CHECKPOINT)["algo"])
    settings = ProMPSettings(cfg.clip, 1, False, cfg.target_inner_kl)
    updates = {
        v: make_promp_update(agent.apply_fn, agent.inner, optimizer(*v), settings) for v in variants
    }
    print(f"{ns.run.name} at {agent.env_steps:,} environment steps; the clipped surrogate")
    print("before each step:\n")
    print("| batch | optimizer | lr | " + " | ".join(f"step {k}" for k in range(ns.steps)) + " |")
    print("|---|---|---:|" + "---:|" * ns.steps)
    for b in range(ns.batches):
        it = agent.sample_iteration()
        for kind, lr in variants:
            state = agent.state
            if kind != "carried":
                state = state._replace(opt_state=optimizer(kind, lr).init(state.params))
            values = []
            for _ in range(ns.steps):
                state, metrics = updates[(kind, lr)](state, it.pre, it.post, it.post_score)
                values.append(float(metrics["losses/surrogate"]))
            cells = " | ".join(f"{v:+.4f}" for v in values)
            print(f"| {b} | {LABELS[kind]} | {lr:g} | {cells} |")
        sys.stdout.flush()
    agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
