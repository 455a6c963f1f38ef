"""The propensity classifier's negatives, ours against as released, on the same checkpoints.

    python benchmarks/propensity_negatives.py RUN_DIR... [--json OUT]
    python benchmarks/propensity_negatives.py --from-json docs/data/point_robot_negatives.json

Each RUN_DIR is an MQL-family run (td3-context, mql, ...). Its latest checkpoint is adapted
with `propensity_negatives="replay"` (uniform over the whole replay buffer, our default) and
with `"recent"` (each training task's `propensity_recent` most recent transitions, as released),
on all test tasks with the run's evaluation seeds: the same tasks, the same new-task episode,
the same scored episodes (paired). Printed per rule: the mean β of the classifier's meta-training
sample, ESS, λ and the adapted return; and the paired difference recent - replay of the
adapted return, mean ± s.e. over all run x task pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from mql import checkpoint, runs
from mql.algos import registry
from mql.evaluate import evaluate, evaluation_seed, standard_error

RULES = ("replay", "recent")


def measure(run_dir: Path) -> dict[str, dict[str, list[float]]]:
    cfg = runs.read_config(run_dir)
    if "propensity_negatives" not in {f.name for f in dataclasses.fields(cfg)}:
        raise ValueError(f"{run_dir}: a {cfg.algo} run has no propensity classifier")
    cfg = cfg.as_variant("mql") if cfg.algo != "mql" else cfg
    saved = checkpoint.load(run_dir / runs.CHECKPOINT)
    out: dict[str, dict[str, list[float]]] = {}
    for rule in RULES:
        agent = registry.make_agent(dataclasses.replace(cfg, propensity_negatives=rule))
        agent.load_state_dict(saved["algo"])
        env = agent.eval_env
        res = evaluate(agent, env, env.test_tasks, cfg.eval_episodes, evaluation_seed(cfg))
        out[rule] = {
            "zero_shot": [t.zero_shot_return for t in res.tasks],
            "adapted": [t.adapted_return for t in res.tasks],
            "beta_mean": [t.diagnostics["beta_mean"] for t in res.tasks],
            "ess": [t.diagnostics["ess"] for t in res.tasks],
            "lambda": [t.diagnostics["lambda"] for t in res.tasks],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--json", type=Path, default=None, help="also write the per-task numbers")
    p.add_argument("--from-json", type=Path, default=None, help="print the table of a --json")
    ns = p.parse_args(argv)
    if ns.from_json is not None:
        results = json.loads(ns.from_json.read_text())
    elif not ns.runs:
        p.error("give run directories or --from-json")
    else:
        results = {}
        for run in ns.runs:
            results[str(run)] = measure(run)
            print(f"measured {run}", file=sys.stderr)

    def pooled(rule: str, key: str) -> np.ndarray:
        return np.concatenate([r[rule][key] for r in results.values()])

    print("| negatives | mean β | ESS | λ | adapted return | adapted - zero-shot (± s.e.) |")
    print("|---|---:|---:|---:|---:|---:|")
    for rule in RULES:
        diff = pooled(rule, "adapted") - pooled(rule, "zero_shot")
        print(
            f"| {rule} | {pooled(rule, 'beta_mean').mean():.3f} | {pooled(rule, 'ess').mean():.3f}"
            f" | {pooled(rule, 'lambda').mean():.3f} | {pooled(rule, 'adapted').mean():.2f}"
            f" | {diff.mean():.2f} ± {standard_error(diff):.2f} |"
        )
    between = pooled("recent", "adapted") - pooled("replay", "adapted")
    print(
        f"\nrecent - replay, adapted return (paired, {len(between)} run x task pairs): "
        f"{between.mean():.3f} ± {standard_error(between):.3f}"
    )
    if ns.json is not None:
        ns.json.parent.mkdir(parents=True, exist_ok=True)
        ns.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
