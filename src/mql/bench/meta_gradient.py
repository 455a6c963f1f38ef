"""One iteration of MAML-TRPO and ProMP, part by part (`mql bench --meta-gradient`).

For each family and algorithm, at the preset's settings (ProMP's: 40 tasks x 20 rollouts,
cheetah-dir's horizon 100, ant-goal's 200 with two inner steps for MAML-TRPO): one iteration
that compiles, then `iterations` timed ones; the median of each part of the agent's own
timing metrics: sampling (every batch, pre- and post-update), advantages (baseline fits and
GAE), the inner steps (the adapted parameters for sampling) and the outer step (MAML-TRPO: the
surrogate's gradient, CG with exact HVPs through the inner step, the line search; ProMP: its
Adam steps), with the outer step's share of the iteration (the target: under 25%).
`mql bench --meta-gradient` adds, on the first family, MAML-TRPO with conjugate gradient's
products on 8 of the 40 tasks (`hvp_tasks=8`).
"""

from __future__ import annotations

from statistics import median
from typing import Any

from mql.algos import registry

__all__ = ["PARTS", "iteration_parts", "markdown_meta_gradient"]

PARTS: tuple[str, ...] = ("sample", "advantages", "inner", "outer")


def iteration_parts(
    env_name: str,
    algo: str,
    iterations: int = 2,
    processes: int = 0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Median seconds of each part of an iteration, and the shares (see the module docstring);
    `overrides`: config fields changed from the preset."""
    overrides = dict(overrides or {})
    cfg = registry.resolve(env_name, algo, sampler_processes=processes, **overrides)
    agent = registry.make_agent(cfg)
    try:
        first = agent.run_iteration()
        runs = [agent.run_iteration() for _ in range(iterations)]
    finally:
        agent.close()
    total = median(m["time/iteration_s"] for m in runs)
    seconds = {p: median(m[f"time/{p}_s"] for m in runs) for p in PARTS}
    return {
        "env": env_name,
        "algo": algo,
        "settings": ", ".join(f"{k}={v}" for k, v in overrides.items()) or "preset",
        "steps": agent.env_steps // (iterations + 1),
        "first_iteration_s": first["time/iteration_s"],
        "iteration_s": total,
        **{f"{p}_s": s for p, s in seconds.items()},
        **{f"{p}_share": s / total for p, s in seconds.items()},
    }


def markdown_meta_gradient(rows: list[dict[str, Any]]) -> str:
    """The table of `iteration_parts` rows."""
    lines = [
        "| family | algorithm | settings | steps per iteration | iteration (first, compiling) "
        "| sampling | advantages | inner steps | outer step | outer share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        parts = " | ".join(f"{r[f'{p}_s']:.2f} s ({r[f'{p}_share']:.0%})" for p in PARTS)
        lines.append(
            f"| {r['env']} | {r['algo']} | {r['settings']} | {r['steps']:,} "
            f"| {r['iteration_s']:.1f} s ({r['first_iteration_s']:.1f} s) | {parts} "
            f"| {r['outer_share']:.0%} |"
        )
    return "\n".join(lines)
