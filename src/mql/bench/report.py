"""The benchmark's markdown: tables, targets, and the section it writes into a doc."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mql.bench.docsection import write_section
from mql.bench.learner import TARGET_ENV
from mql.bench.machine import machine_line

TARGETS = {"utilisation": 0.60, "e2e_ratio": 0.85, "replay_bytes": 400.0}
START = "<!-- learner-throughput:start -->"
END = "<!-- learner-throughput:end -->"


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        if row["env"] != TARGET_ENV:
            continue
        checks = [
            ("update utilisation", row["utilisation"], TARGETS["utilisation"], ">=", "{:.0%}"),
            (
                "end-to-end / update rate",
                row["e2e_ratio"],
                TARGETS["e2e_ratio"],
                ">=",
                "{:.0%}",
            ),
            (
                "replay bytes/transition",
                row["bytes_per_transition"],
                TARGETS["replay_bytes"],
                "<=",
                "{:.0f}",
            ),
        ]
        for name, value, target, op, fmt in checks:
            ok = value >= target if op == ">=" else value <= target
            lines.append(
                f"- {TARGET_ENV} {name}: {fmt.format(value)} (target {op} "
                f"{fmt.format(target)}): {'met' if ok else 'NOT met'}"
            )
    return lines


def markdown(rows: list[dict[str, Any]]) -> str:
    """Two tables: the update, and the loop and replay."""
    lines = [
        "| preset | obs/act/H/ctx | matmul peak GFLOP/s | updates/s | MFLOP/update (XLA) "
        "| matmul MFLOP/update (hand) | achieved GFLOP/s | utilisation | cores busy "
        "| ceiling: B x W² matmul+ReLU chain, XLA | same product, NumPy BLAS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['obs_dim']}/{r['act_dim']}/{r['history_len']}/"
            f"{r['context_dim']} | {r['peak_gflops']:.1f} | {r['updates_per_s']:.1f} "
            f"| {r['flops_per_update'] / 1e6:,.1f} "
            f"| {r['matmul_flops_per_update_hand'] / 1e6:,.1f} "
            f"| {r['flops_per_update'] * r['updates_per_s'] / 1e9:.1f} | {r['utilisation']:.0%} "
            f"| {r['update_cores']:.1f} "
            f"| {r['chain_gflops']:.1f} ({r['chain_gflops'] / r['peak_gflops']:.0%}) "
            f"| {r['blas_gflops']:.1f} ({r['blas_gflops'] / r['peak_gflops']:.0%}) |"
        )
    lines += [
        "",
        "| preset | end-to-end env steps/s | end-to-end / update rate | time collecting "
        "| act latency µs | env step µs | update / env step | host sampling µs/update (MB/batch) "
        "| staging MB | replay B/transition (released layout) | peak MB filling | fill s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['e2e_steps_per_s']:.1f} | {r['e2e_ratio']:.0%} "
            f"| {r['collect_share']:.0%} | {r['act_latency_us']:.0f} | {r['env_step_us']:.0f} "
            f"| {r['update_over_env_step']:.0f}x | {r['sample_us_per_update']:.0f} "
            f"({r['batch_bytes'] / 2**20:.1f}) | {r['staging_mb']:.0f} "
            f"| {r['bytes_per_transition']:.0f} ({r['released_bytes_per_transition']:.0f}) "
            f"| {r['fill_peak_mb']:.1f} ({r['fill_transitions']:,.0f}) | {r['fill_s']:.1f} |"
        )
    return "\n".join(lines)


def markdown_experiments(rows: list[dict[str, Any]], env: str) -> str:
    lines = [
        f"A/B on {env} (same batches, alternating rounds, medians):",
        "",
        "| variant | updates/s | vs baseline | MFLOP/update | utilisation |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['updates_per_s']:.1f} | {r['ratio_to_first']:.2f}x "
            f"| {r['flops_per_update'] / 1e6:,.1f} | {r['utilisation']:.0%} |"
        )
    return "\n".join(lines)


def section(
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    command: str,
    args: argparse.Namespace,
    exp: list[dict[str, Any]] | None,
) -> str:
    parts = [
        START,
        f"Command: `{command}` ({args.rounds} rounds; {args.updates} timed updates and "
        f"≥{args.e2e_steps} end-to-end environment steps per round; medians shown).",
        "",
        f"Machine: {machine_line(info)}",
        "",
        markdown(rows),
        "",
        "1-minute load average after each preset (this benchmark alone accounts for about 1 "
        "to 2 on this machine; more means other processes shared the cores): "
        + ", ".join(f"{r['env']} {r['load_avg_1min']:.1f}" for r in rows)
        + ".",
        "",
        "Targets:",
        *_targets(rows),
    ]
    if exp:
        parts += ["", markdown_experiments(exp, args.presets[0])]
    parts.append(END)
    return "\n".join(parts)


def write_doc(text: str, path: Path) -> None:
    """Replace this benchmark's marked section of `path` (or append it)."""
    write_section(path, START, END, "Learner throughput", text)
