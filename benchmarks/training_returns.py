"""The training returns of on-policy meta-gradient runs (MAML-TRPO, ProMP): pre- and post-update
returns of every iteration's meta-batch, averaged over blocks of iterations.

    python benchmarks/training_returns.py RUN_ROOT DEST [--block 100]

For every run directory below RUN_ROOT, DEST/<run name>/training_returns.csv gets the columns
iteration, env_steps, train/return_pre and train/return_step1 of its metrics.csv (the mean
return of the meta-batch's episodes before and after the inner step: 40 tasks x 20 rollouts a
point at the preset, far less noisy than the periodic evaluation on 2 test tasks), and the
outer update's course where the run logged it (`STEP_COLUMNS`: the outer loss at the update's
first and last recorded step, ProMP's clipped surrogate, inner KL and its weight eta there,
MAML-TRPO's outer KL and line-search step, the policy's mean log-std); then a Markdown table of
the block means is printed (one row per block of `--block` iterations).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from mql.results import find_run_dirs
from mql.runs import METRICS, read_csv

COLUMNS = ("iteration", "env_steps", "train/return_pre", "train/return_step1")
STEP_COLUMNS = (
    "losses/outer_loss_before",
    "losses/outer_loss",
    "losses/surrogate",
    "losses/inner_kl",
    "losses/kl_coef",
    "losses/outer_kl",
    "losses/line_search_step",
    "train/log_std",
)


def block_rows(rows: list[dict[str, str]], block: int) -> list[tuple[int, int, float, float]]:
    """(first iteration, last iteration, mean pre-update, mean post-update return) per block."""
    out = []
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        pre = sum(float(r["train/return_pre"]) for r in part) / len(part)
        post = sum(float(r["train/return_step1"]) for r in part) / len(part)
        out.append((int(part[0]["iteration"]), int(part[-1]["iteration"]), pre, post))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--block", type=int, default=100, help="iterations per row of the table")
    ns = p.parse_args(argv)
    if ns.block < 1:
        print("training_returns: error: --block must be >= 1", file=sys.stderr)
        return 2
    try:
        dirs = [d for d in find_run_dirs([ns.root]) if (d / METRICS).is_file()]
    except ValueError as e:
        print(f"training_returns: error: {e}", file=sys.stderr)
        return 2
    tables = []
    for run in dirs:
        rows = [r for r in read_csv(run / METRICS) if r.get("train/return_step1")]
        if not rows:
            continue
        out = ns.dest / run.name
        out.mkdir(parents=True, exist_ok=True)
        columns = COLUMNS + tuple(c for c in STEP_COLUMNS if c in rows[0])
        with (out / "training_returns.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows([r[c] for c in columns] for r in rows)
        lines = [
            f"{run.name}: pre- -> post-update training return, mean over each block",
            "",
            "| iterations | pre-update | post-update | post - pre |",
            "|---|---:|---:|---:|",
        ]
        for first, last, pre, post in block_rows(rows, ns.block):
            lines.append(f"| {first}-{last} | {pre:.1f} | {post:.1f} | {post - pre:+.1f} |")
        tables.append("\n".join(lines))
    if not tables:
        print(f"training_returns: error: no meta-gradient runs below {ns.root}", file=sys.stderr)
        return 2
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
