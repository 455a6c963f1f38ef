"""`mql plot DIR... [--out FILE.png]`: learning curves, λ/β and adaptation curves of run
directories.

Each DIR is a run directory (it holds `config.json`) or a folder whose children or grandchildren
are. Runs are grouped by (env, algo) and, when runs of one env differ in other config values
(a `mql sweep --set ...`), by those values too (`mql.results`); a seed given twice in one group
is an error. The seeds of a group are put on a common grid of environment steps (their shared
evaluation steps, or linear interpolation where seeds evaluated at different steps; a curve cut
to its shortest seed is said on stderr) and drawn as:

- `--band iqm` (default): the interquartile mean over seed x task scores (the per-task returns
  of evals/step_N.json, the same tasks at every evaluation) with a 95% stratified-bootstrap
  band (`mql.stats`); runs without per-task data fall back to the mean;
- `--band mean`: the mean over seeds of each seed's mean over tasks, with a 95% bootstrap band.

With fewer than 3 seeds no band is drawn: each seed's own curve is drawn thin instead. Curves
that coincide exactly (MQL's zero-shot curve is TD3-context's when both meta-train alike) are
marked "(= ...)" in the legend, since one hides the other.

Figure 1 (`--out`): zero-shot and, for the adapting algorithms, adapted return on the test tasks
against environment steps, one panel per environment. Figure 2 (`FILE_lambda_beta.png`): the
mean λ and the mean β of the adaptations at each evaluation (the paper's Fig. 5), for the runs
that log them. Figure 3 (`FILE_adaptation.png`): the return after K new-task episodes against
K at the final evaluation, for runs that scored it (`--eval-adapt-episodes`). Figure 4
(`FILE_success.png`): the success rate, zero-shot and adapted, against environment steps, for
runs on families whose episodes report `info["success"]` (Meta-World). Nothing is written when
the input has no usable data. `--log-steps` puts the steps axes of figures 1, 2 and 4 on a log
scale (the way to see MQL's 1e5 steps beside MAML's 1e8 in one panel).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mql import runs, stats
from mql.results import Group, check_unique_seeds, find_run_dirs, group_runs, load_run

_RETURN_KINDS = (("zero_shot_return", "zero-shot", "--"), ("adapted_return", "adapted", "-"))
_SUCCESS_KINDS = (
    ("zero_shot_success", "zero-shot", "--"),
    ("adapted_success", "adapted", "-"),
)
_LAMBDA_BETA = (("lambda", "λ (weight of the proximal term)"), ("beta_mean", "mean β"))


SAME_STEP = 0.01
"""Evaluations of two seeds within this fraction of each other's step are one curve point."""


def align(series: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Seeds on a common step grid: (steps, values[n_seeds, n_steps]).

    The grid is the steps all seeds evaluated at; when they share fewer than two (episodes of
    random length make the evaluation steps differ), it is the steps of the seed with the most
    evaluations within the range every seed covers, and the others are interpolated linearly.
    That range is widened by `SAME_STEP` (1%) of its ends, where a seed's value is its nearest
    evaluation: iterations overshoot an evaluation period, so one seed's "300k" evaluation may
    come at 300,237 steps and another's at 300,331, and they are the same point of the curve.
    """
    if len(series) == 1:
        return series[0][0], series[0][1][None, :]
    shared = set(series[0][0].tolist())
    for xs, _ in series[1:]:
        shared &= set(xs.tolist())
    if shared and len(shared) >= 0.8 * min(len(xs) for xs, _ in series):
        grid = np.asarray(sorted(shared))
    else:
        lo = max(float(xs[0]) for xs, _ in series)
        hi = min(float(xs[-1]) for xs, _ in series)
        ref = max(series, key=lambda s: len(s[0]))[0]
        grid = ref[(ref >= lo * (1 - SAME_STEP)) & (ref <= hi * (1 + SAME_STEP))]
        if len(grid) == 0:
            grid = np.asarray([lo]) if lo <= hi * (1 + SAME_STEP) else np.asarray([])
    values = np.stack([np.interp(grid, xs, ys) for xs, ys in series]) if len(grid) else None
    if values is None:
        return grid, np.empty((len(series), 0))
    return grid, values


def bootstrap_ci(
    values: np.ndarray, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over seeds (axis 0), at each grid step."""
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    means = values[idx].mean(axis=1)  # (resamples, n_steps)
    alpha = (1.0 - level) / 2.0
    return np.quantile(means, alpha, axis=0), np.quantile(means, 1.0 - alpha, axis=0)


@dataclass
class Curve:
    label: str
    color: Any
    style: str
    steps: np.ndarray
    mean: np.ndarray
    band: tuple[np.ndarray, np.ndarray] | None
    n_seeds: int
    seed_lines: np.ndarray | None = None
    """(seeds, steps): drawn instead of a band when there are fewer than 3 seeds."""
    estimator: str = "mean"
    truncated_at: float | None = None
    """The last step of the grid when a longer seed was cut to the shortest."""


MIN_SEEDS_FOR_BAND = 3


def curves_for(
    group: Group,
    column: str,
    label: str,
    color: Any,
    style: str,
    resamples: int,
    band: str = "mean",
) -> Curve | None:
    series = [s for r in group.runs if (s := r.series(column)) is not None]
    if not series:
        return None
    steps, values = align(series)
    if values.shape[1] == 0:
        return None
    longest = max(float(xs[-1]) for xs, _ in series)
    cut = float(steps[-1]) if float(steps[-1]) < longest else None
    center, estimator = values.mean(axis=0), "mean"
    few = len(series) < MIN_SEEDS_FOR_BAND
    interval = None if few else bootstrap_ci(values, resamples)
    if band == "iqm":
        scores = _task_scores(group, column, steps)
        if scores is not None:
            center = np.array([stats.iqm(scores[:, :, g]) for g in range(len(steps))])
            estimator = "IQM"
            if not few:
                cis = [
                    stats.stratified_bootstrap_ci(scores[:, :, g], reps=resamples)
                    for g in range(len(steps))
                ]
                interval = (np.array([c[0] for c in cis]), np.array([c[1] for c in cis]))
    return Curve(
        label,
        color,
        style,
        steps,
        center,
        interval,
        len(series),
        seed_lines=values if few and len(series) > 1 else None,
        estimator=estimator,
        truncated_at=cut,
    )


def _task_scores(group: Group, column: str, grid: np.ndarray) -> np.ndarray | None:
    """(runs, tasks, grid) per-task values of `column` interpolated on `grid`; column j is each
    run's j-th evaluated task (`Group.final_scores` says why). None when a run has no per-task
    data or the runs evaluated different numbers of tasks."""
    split, key = column.split("/", 1)
    per_run = [r.task_series(key, split) for r in group.runs]
    if not all(per_run) or len({len(t) for t in per_run}) > 1:
        return None
    return np.array(
        [[np.interp(grid, *run[t]) for t in sorted(run)] for run in per_run], dtype=np.float64
    )


def _mark_coinciding(panel: list[Curve]) -> None:
    """Label curves equal to an earlier one in the panel (drawn on top of each other)."""
    for i, c in enumerate(panel):
        for earlier in panel[:i]:
            if np.array_equal(c.steps, earlier.steps) and np.array_equal(c.mean, earlier.mean):
                c.label += f" (= {earlier.label})"
                break


def _draw(ax: Any, curve: Curve, log_steps: bool = False) -> None:
    """One curve (and its band or seed lines); on a log steps axis, its points at step 0 are
    left out (they have no place there)."""
    keep = curve.steps > 0 if log_steps else np.ones(len(curve.steps), bool)
    steps = curve.steps[keep]
    marker = "o" if len(steps) <= 25 else None
    ax.plot(
        steps,
        curve.mean[keep],
        linestyle=curve.style,
        color=curve.color,
        marker=marker,
        markersize=4,
        markerfacecolor="white" if curve.style != "-" else curve.color,
        linewidth=1.8,
        label=curve.label,
    )
    if curve.band is not None:
        ax.fill_between(
            steps, curve.band[0][keep], curve.band[1][keep], color=curve.color, alpha=0.18,
            linewidth=0,
        )  # fmt: skip
    if curve.seed_lines is not None:
        for line in curve.seed_lines:
            ax.plot(
                steps, line[keep], linestyle=curve.style, color=curve.color, linewidth=0.7,
                alpha=0.5,
            )  # fmt: skip


def _steps_axis(ax: Any, log_steps: bool = False) -> None:
    from matplotlib.ticker import EngFormatter

    if log_steps:  # runs of 1e5 to 1e8 steps side by side (MQL against MAML, ProMP, RL2)
        ax.set_xscale("log")
        ax.set_xlabel("environment steps (log scale)")
    else:
        ax.set_xlim(left=0)
        ax.set_xlabel("environment steps")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(True, alpha=0.3)


def _new_figure(n_panels: int, ncols: int, panel_w: float, panel_h: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel_w * ncols, panel_h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _colors(groups: Sequence[Group]) -> dict[str, Any]:
    """One color per group label, the same in every panel and both figures."""
    from matplotlib import colormaps

    labels = sorted({g.label for g in groups})
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _seeds_note(curves: Sequence[Curve]) -> str:
    counts = sorted({c.n_seeds for c in curves})
    if counts == [1]:
        return "1 seed"
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    estimators = "/".join(sorted({c.estimator for c in curves}))
    if counts[-1] < MIN_SEEDS_FOR_BAND:
        return f"{span} seeds, {estimators} and each seed"
    kind = "stratified bootstrap" if estimators == "IQM" else "bootstrap"
    return f"{span} seeds, {estimators} and 95% {kind} CI"


def _figure_legend(fig: Any, axes: Any) -> None:
    """One legend below the panels with every line once (panels share colors and styles)."""
    entries: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        # as many columns as fit the figure's width (about 0.075 in per character at size 9,
        # plus the line sample), so no entry is cut off
        longest = max(len(label) for label in entries)
        per_col = 0.075 * longest + 0.8
        ncols = max(1, min(len(entries), int(fig.get_size_inches()[0] // per_col)))
        fig.legend(
            entries.values(), entries.keys(), loc="outside lower center", ncols=ncols, fontsize=9
        )


def return_figure(
    groups: Sequence[Group],
    split: str,
    resamples: int,
    band: str = "iqm",
    log_steps: bool = False,
) -> Any | None:
    tasks = "held-out test tasks" if split == "test" else "training tasks"
    return _curve_figure(
        groups, split, resamples, band, _RETURN_KINDS, f"return, {split} tasks",
        f"Return on {tasks}\nzero-shot (dashed) and adapted (solid)", log_steps=log_steps,
    )  # fmt: skip


def success_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_success{out.suffix}")


def success_figure(
    groups: Sequence[Group],
    split: str,
    resamples: int,
    band: str = "iqm",
    log_steps: bool = False,
) -> Any | None:
    """The success rate against environment steps (families whose episodes report
    `info["success"]`, e.g. Meta-World), zero-shot and adapted; None when no run logs it."""
    tasks = "held-out test tasks" if split == "test" else "training tasks"
    return _curve_figure(
        groups, split, resamples, band, _SUCCESS_KINDS, f"success rate, {split} tasks",
        f"Success rate on {tasks} (success at some step)\nzero-shot (dashed) and adapted (solid)",
        ylim=(-0.02, 1.02), log_steps=log_steps,
    )  # fmt: skip


def _curve_figure(
    groups: Sequence[Group],
    split: str,
    resamples: int,
    band: str,
    kinds: tuple[tuple[str, str, str], ...],
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
    log_steps: bool = False,
) -> Any | None:
    envs = sorted({g.env for g in groups})
    colors = _colors(groups)
    panels: dict[str, list[Curve]] = {}
    for env in envs:
        panel = []
        for g in (g for g in groups if g.env == env):
            for kind, name, style in kinds:
                c = curves_for(
                    g,
                    f"{split}/{kind}",
                    f"{g.label}: {name}",
                    colors[g.label],
                    style,
                    resamples,
                    band,
                )
                if c is not None:
                    panel.append(c)
                    if c.truncated_at is not None:
                        print(
                            f"note: {env} {c.label}: cut at {c.truncated_at:.0f} steps, where "
                            "its shortest seed ends",
                            file=sys.stderr,
                        )
        if panel:
            _mark_coinciding(panel)
            panels[env] = panel
    if not panels:
        return None
    ncols = min(3, len(panels))
    fig, axes = _new_figure(len(panels), ncols, 5.6, 4.2)
    for ax, (env, panel) in zip(axes.flat, panels.items(), strict=False):
        for c in panel:
            _draw(ax, c, log_steps)
        ax.set_title(f"{env} ({_seeds_note(panel)})", fontsize=10)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        _steps_axis(ax, log_steps)
    _figure_legend(fig, axes)
    fig.suptitle(title, fontsize=11)
    return fig


def lambda_beta_figure(
    groups: Sequence[Group], split: str, resamples: int, log_steps: bool = False
) -> Any | None:
    colors = _colors(groups)
    rows: dict[str, list[list[Curve]]] = {}
    for env in sorted({g.env for g in groups}):
        row: list[list[Curve]] = [[] for _ in _LAMBDA_BETA]
        for g in (g for g in groups if g.env == env):
            for i, (key, _) in enumerate(_LAMBDA_BETA):
                c = curves_for(g, f"{split}/{key}", g.label, colors[g.label], "-", resamples)
                if c is not None:
                    row[i].append(c)
        if any(row):
            rows[env] = row
    if not rows:
        return None
    fig, axes = _new_figure(2 * len(rows), 2, 5.2, 3.6)
    for r, (env, row) in enumerate(rows.items()):
        for i, (_, title) in enumerate(_LAMBDA_BETA):
            ax = axes[r, i]
            for c in row[i]:
                _draw(ax, c, log_steps)
            ax.set_title(f"{env}: {title}", fontsize=10)
            ax.set_ylabel(title.split(" (")[0])
            _steps_axis(ax, log_steps)
            if not row[i]:
                ax.text(
                    0.5,
                    0.5,
                    "not logged",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="gray",
                )
    _figure_legend(fig, axes)
    fig.suptitle(f"Adaptation on {split} tasks: λ and mean β over meta-training", fontsize=11)
    return fig


def lambda_beta_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_lambda_beta{out.suffix}")


def adaptation_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_adaptation{out.suffix}")


def _final_ks(group: Group, split: str) -> list[int]:
    ks: set[int] = set()
    for r in group.runs:
        for t in (r.final_result(split) or {}).get("tasks", []):
            ks.update(int(c["episodes"]) for c in t.get("curve", []))
    return sorted(ks)


def adaptation_figure(
    groups: Sequence[Group], split: str, resamples: int, band: str = "iqm"
) -> Any | None:
    """Return after K new-task episodes against K, at the final evaluation."""
    colors = _colors(groups)
    panels: dict[str, list[tuple[Group, list[int], np.ndarray, np.ndarray, np.ndarray]]] = {}
    for g in groups:
        ks = _final_ks(g, split)
        if not ks:
            continue
        center, lo, hi = [], [], []
        for k in ks:
            scores = g.final_scores(f"k{k}", split)
            if band == "iqm":
                center.append(stats.iqm(scores))
                ci = stats.stratified_bootstrap_ci(scores, reps=resamples)
            else:
                center.append(float(scores.mean()))
                per_seed = scores.mean(axis=1)[:, None]
                ci = tuple(x[0] for x in bootstrap_ci(per_seed, resamples))
            lo.append(ci[0])
            hi.append(ci[1])
        panels.setdefault(g.env, []).append((g, ks, np.array(center), np.array(lo), np.array(hi)))
    if not panels:
        return None
    fig, axes = _new_figure(len(panels), min(3, len(panels)), 5.0, 4.0)
    for ax, (env, lines) in zip(axes.flat, panels.items(), strict=False):
        for g, ks, center, lo, hi in lines:
            ax.plot(ks, center, marker="o", color=colors[g.label], label=g.label, linewidth=1.8)
            if len(g.runs) >= MIN_SEEDS_FOR_BAND:
                ax.fill_between(ks, lo, hi, color=colors[g.label], alpha=0.18, linewidth=0)
        seeds = sorted({len(g.runs) for g, *_ in lines})
        ax.set_title(f"{env} ({'/'.join(map(str, seeds))} seeds)", fontsize=10)
        ax.set_xlabel("K (new-task episodes before scoring)")
        ax.set_ylabel(f"return, {split} tasks ({'IQM' if band == 'iqm' else 'mean'})")
        ax.set_xticks(sorted({k for _, ks, *_ in lines for k in ks}))
        ax.grid(True, alpha=0.3)
    _figure_legend(fig, axes)
    fig.suptitle("Return after K new-task episodes (final evaluation)", fontsize=11)
    return fig


def _check_out(out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fmt = out.suffix.lstrip(".").lower()
    supported = FigureCanvasAgg.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"--out {out}: unknown image format {out.suffix or '(none)'}; "
            f"use one of {', '.join('.' + f for f in sorted(supported))}"
        )
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name such as {out}/curves.png")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mql plot",
        description="Plot learning curves (IQM or mean over seeds), λ and β, and the return "
        "after K new-task episodes of run directories.",
    )
    p.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="run directories, or folders holding them (up to two levels down)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("learning_curves.png"),
        help="image of the returns (default: learning_curves.png); λ and β go to "
        "FILE_lambda_beta.png beside it",
    )
    p.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="tasks whose evaluations are plotted (default: test)",
    )
    p.add_argument(
        "--band",
        choices=("iqm", "mean"),
        default="iqm",
        help="center and band of the curves: IQM with a stratified-bootstrap CI (default), "
        "or the mean over seeds with a bootstrap CI",
    )
    p.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="bootstrap resamples for the confidence band (default: 1000)",
    )
    p.add_argument(
        "--log-steps",
        action="store_true",
        help="environment steps on a log scale, to compare runs whose budgets differ by "
        "orders of magnitude (evaluations at step 0 are left out)",
    )
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if ns.resamples <= 0:
        raise ValueError(f"--resamples must be positive, got {ns.resamples}")
    _check_out(ns.out)

    all_runs = [load_run(d) for d in find_run_dirs(ns.dirs)]
    column = f"{ns.split}/zero_shot_return"
    usable = [r for r in all_runs if r.series(column) is not None]
    if not usable:
        where = ", ".join(str(d) for d in ns.dirs)
        raise ValueError(
            f"no evaluation data to plot in {where}: "
            f"{len(all_runs)} run(s) found, none with {column} rows in {runs.EVAL}"
        )
    for r in all_runs:
        if not any(r is u for u in usable):
            print(f"note: {r.path} has no {column} in {runs.EVAL} yet; left out", file=sys.stderr)
    groups = group_runs(usable)
    check_unique_seeds(groups)
    fig1 = return_figure(groups, ns.split, ns.resamples, ns.band, ns.log_steps)
    fig2 = lambda_beta_figure(groups, ns.split, ns.resamples, ns.log_steps)
    fig3 = adaptation_figure(groups, ns.split, ns.resamples, ns.band)
    fig4 = success_figure(groups, ns.split, ns.resamples, ns.band, ns.log_steps)
    assert fig1 is not None  # every usable run has a zero-shot series

    try:
        ns.out.parent.mkdir(parents=True, exist_ok=True)
        fig1.savefig(ns.out, dpi=130)
    except OSError as e:
        raise ValueError(f"--out {ns.out}: cannot write it ({e.strerror or e})") from None
    print(ns.out)
    out2 = lambda_beta_path(ns.out)
    if fig2 is not None:
        fig2.savefig(out2, dpi=130)
        print(out2)
    else:
        print(f"note: no λ/β logged by these runs; {out2} not written", file=sys.stderr)
    if fig3 is not None:
        out3 = adaptation_path(ns.out)
        fig3.savefig(out3, dpi=130)
        print(out3)
    if fig4 is not None:
        out4 = success_path(ns.out)
        fig4.savefig(out4, dpi=130)
        print(out4)
    for g in groups:
        seeds = ", ".join(str(r.seed) for r in g.runs)
        print(f"  {g.env:20s} {g.label:30s} seeds {seeds}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
