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

Against the machine's limits: the outer step's matmul FLOPs, counted on its jaxpr with every
loop's trip count (`mql.bench.flops.jaxpr_matmul_flops`; the line search's trips are the last
timed iteration's), the rate it ran at, and the ceiling of its dominant product on this machine:
XLA's best rate on a chain of (states of one task x width) . (width x width) products with ReLU
(`mlp_chain_gflops`), each task's products being of that shape. From these, the outer step's
share of the iteration had it run at the ceiling: what no rearrangement of the same arithmetic
in XLA could be expected to beat.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from mql.algos import registry
from mql.bench.flops import jaxpr_matmul_flops
from mql.bench.timing import mlp_chain_gflops

__all__ = [
    "PARTS",
    "iteration_parts",
    "markdown_meta_gradient",
    "shape_ceiling",
    "with_ceiling",
]

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
    outer = agent._outer
    inputs: list[Any] = []

    def recording_outer(*args: Any) -> Any:
        inputs[:] = args
        return outer(*args)

    agent._outer = recording_outer  # keeps the last outer step's inputs for the FLOP count
    try:
        first = agent.run_iteration()
        runs = [agent.run_iteration() for _ in range(iterations)]
    finally:
        agent.close()
    total = median(m["time/iteration_s"] for m in runs)
    seconds = {p: median(m[f"time/{p}_s"] for m in runs) for p in PARTS}
    step = int(runs[-1].get("losses/line_search_step", 0))
    trips = step + 1 if step >= 0 else int(getattr(cfg, "max_backtracks", 1))
    outer_flops = jaxpr_matmul_flops(outer, *inputs, while_trips=trips)
    return {
        "env": env_name,
        "algo": algo,
        "settings": ", ".join(f"{k}={v}" for k, v in overrides.items()) or "preset",
        "steps": agent.env_steps // (iterations + 1),
        "first_iteration_s": first["time/iteration_s"],
        "iteration_s": total,
        **{f"{p}_s": s for p, s in seconds.items()},
        **{f"{p}_share": s / total for p, s in seconds.items()},
        "outer_gflop": outer_flops / 1e9,
        "outer_gflops_rate": outer_flops / 1e9 / seconds["outer"],
        "task_states": agent.horizon * cfg.rollouts_per_task,
        "width": cfg.hidden[0],
    }


def shape_ceiling(states: int, width: int, calls: int = 3) -> float:
    """The best of `calls` measurements of `mlp_chain_gflops(states, width)` (GFLOP/s): the
    most generous ceiling this machine showed for the policy's product shape."""
    return max(mlp_chain_gflops(states, width) for _ in range(calls))


def with_ceiling(row: dict[str, Any], ceiling: float) -> dict[str, Any]:
    """`row` and, at `ceiling` GFLOP/s, the outer step's time and share of the iteration (the
    other parts as measured)."""
    at_ceiling = row["outer_gflop"] / ceiling
    rest = row["iteration_s"] - row["outer_s"]
    return {
        **row,
        "ceiling_gflops": ceiling,
        "outer_at_ceiling_s": at_ceiling,
        "outer_share_at_ceiling": at_ceiling / (at_ceiling + rest),
    }


def markdown_meta_gradient(rows: list[dict[str, Any]]) -> str:
    """The table of `iteration_parts` rows completed by `with_ceiling`."""
    lines = [
        "| family | algorithm | settings | steps per iteration | iteration (first, compiling) "
        "| sampling | advantages | inner steps | outer step | outer share "
        "| outer matmul GFLOP | its rate, GFLOP/s | ceiling of its shape | share at the ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        parts = " | ".join(f"{r[f'{p}_s']:.2f} s ({r[f'{p}_share']:.0%})" for p in PARTS)
        lines.append(
            f"| {r['env']} | {r['algo']} | {r['settings']} | {r['steps']:,} "
            f"| {r['iteration_s']:.1f} s ({r['first_iteration_s']:.1f} s) | {parts} "
            f"| {r['outer_share']:.0%} | {r['outer_gflop']:.1f} | {r['outer_gflops_rate']:.0f} "
            f"| {r['ceiling_gflops']:.0f} ({r['task_states']:,} x {r['width']}) "
            f"| {r['outer_share_at_ceiling']:.0%} |"
        )
    return "\n".join(lines)
