"""Environment steps each run needed to reach given returns on its test tasks (the MQL paper's
Fig. 3 claim, sample efficiency, as numbers): a Markdown table, one row per run.

    python benchmarks/sample_efficiency.py DIR [DIR ...] [--thresholds 200 400] [--window 3]
    python benchmarks/sample_efficiency.py DIR [DIR ...] --windows 0 20e6 40e6 ...

For every run directory found under the DIRs (as `mql plot` finds them), the periodic
evaluations of its eval.csv (`test/adapted_return`; `test/zero_shot_return` for algorithms that
do not adapt) are smoothed by a trailing mean over `--window` consecutive evaluations (single
evaluations on 2 test tasks swing by 100-200 on cheetah-dir), and the table gives the
environment steps of the first evaluation where that mean reaches each threshold ("not
reached" otherwise), the run's budget, and the mean over its last `--window` evaluations.
With `--windows EDGES`, the table is instead the mean zero-shot and adapted return of each run's
evaluations in each window of steps (lo, hi] between consecutive edges.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from mql.results import Run, find_run_dirs, load_run


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the `window` - 1 before it (fewer at the start)."""
    sums = np.cumsum(np.concatenate(([0.0], values)))
    lo = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    hi = np.arange(1, len(values) + 1)
    return (sums[hi] - sums[lo]) / (hi - lo)


def first_reaching(steps: np.ndarray, smoothed: np.ndarray, threshold: float) -> float | None:
    """The first step whose smoothed return is >= threshold, or None."""
    hits = np.flatnonzero(smoothed >= threshold)
    return float(steps[hits[0]]) if len(hits) else None


def _steps(x: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}"


def row(run: Run, thresholds: list[float], window: int) -> str | None:
    """The table row of one run, None when it has no test evaluations."""
    series = run.series("test/adapted_return") or run.series("test/zero_shot_return")
    if series is None:
        return None
    steps, values = series
    smoothed = trailing_mean(values, window)
    cells = []
    for th in thresholds:
        hit = first_reaching(steps, smoothed, th)
        cells.append(_steps(hit) if hit is not None else "not reached")
    cfg = run.config
    last = float(np.mean(values[-window:]))
    return (
        f"| {cfg['env']} | {cfg['algo']} | {cfg['seed']} | {' | '.join(cells)} "
        f"| {_steps(float(steps[-1]))} | {last:.1f} |"
    )


def window_rows(run: Run, edges: list[float]) -> list[str]:
    """One row per window (lo, hi] holding evaluations: their count and mean returns."""
    zero = run.series("test/zero_shot_return")
    adapted = run.series("test/adapted_return")
    if zero is None:
        return []
    out = []
    for lo, hi in itertools.pairwise(edges):
        inside = (zero[0] > lo) & (zero[0] <= hi)
        if not inside.any():
            continue
        z = float(zero[1][inside].mean())
        cells = [f"{z:.1f}", "-", "-"]
        if adapted is not None:
            a = float(adapted[1][(adapted[0] > lo) & (adapted[0] <= hi)].mean())
            cells[1:] = [f"{a:.1f}", f"{a - z:+.1f}"]
        out.append(
            f"| {run.config['algo']} | {_steps(lo) if lo else '0'}-{_steps(hi)} "
            f"| {int(inside.sum())} | {' | '.join(cells)} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--thresholds", nargs="+", type=float, default=[200.0, 400.0])
    p.add_argument("--window", type=int, default=3)
    p.add_argument("--windows", nargs="+", type=float, metavar="EDGE")
    ns = p.parse_args(argv)
    if ns.window < 1:
        p.error(f"--window must be >= 1, got {ns.window}")
    try:
        runs = [load_run(d) for d in find_run_dirs(ns.dirs)]
    except ValueError as e:
        p.error(str(e))
    ordered = sorted(runs, key=lambda r: (r.config["env"], r.config["algo"], r.config["seed"]))
    if ns.windows:
        if len(ns.windows) < 2 or sorted(ns.windows) != ns.windows:
            p.error("--windows needs two or more increasing step edges")
        heads = "algorithm | window (env steps) | evaluations | zero-shot | adapted | difference"
        print(f"| {heads} |")
        print("|---|---|---:|---:|---:|---:|")
        for run in ordered:
            for line in window_rows(run, ns.windows):
                print(line)
        return 0
    heads = " | ".join(f"steps to {th:g}" for th in ns.thresholds)
    print(f"| env | algorithm | seed | {heads} | budget | last {ns.window} evaluations |")
    print("|---|---|---:|" + "---:|" * (len(ns.thresholds) + 2))
    for run in ordered:
        line = row(run, ns.thresholds, ns.window)
        if line is None:
            print(f"note: {run.path} has no test evaluations; left out", file=sys.stderr)
        else:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
