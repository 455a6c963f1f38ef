"""`mql report DIR... [--baseline ALGO] [--at-step N] [--json]`: the final evaluations of runs
as one table per environment (with `--at-step N`, each run's last evaluation at or before N
environment steps instead: runs of different lengths compared at one budget).

Each row is one experiment (an algorithm and its config values, `mql.results.group_runs`) over
its seeds, from each run's final_eval.json (all test tasks, paired episodes):

- zero-shot, adapted: the mean return over seeds and tasks;
- adapted - zero-shot: the paired difference (same reset seeds), mean over seeds of each
  seed's mean over tasks, ± its standard error over seeds (over tasks when there is one seed);
- IQM [95% CI]: the interquartile mean of the algorithm's own score (adapted where it adapts,
  else zero-shot) over all seed x task scores, with a stratified-bootstrap interval
  (`mql.stats`);
- K = ...: the mean return after K new-task episodes, where the runs scored them;
- new-task steps: the mean steps of new-task data the adapted score used;
- P(> baseline): the probability that a seed of this row beats a seed of the baseline on a
  task (Mann-Whitney, averaged over tasks), with its stratified-bootstrap interval;
- success zero-shot, adapted (families whose episodes report `info["success"]`, Meta-World):
  the share of scored episodes that succeeded at some step, over seeds and tasks; and, where
  tasks belong to environment classes (ML10, ML45), a table of the success rate per class.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mql import stats
from mql.evaluate import standard_error
from mql.results import Group, Run, check_unique_seeds, find_run_dirs, group_runs, load_run

__all__ = ["main", "report_rows", "to_markdown"]


def _score_key(group: Group) -> str:
    """The algorithm's own score: adapted where it adapts, else zero-shot."""
    adapts = any(r.final_task_values("adapted_return") for r in group.runs)
    return "adapted_return" if adapts else "zero_shot_return"


def _finals(group: Group) -> list[Run]:
    return [r for r in group.runs if r.final_result() is not None]


def _curve_ks(group: Group) -> list[int]:
    ks: set[int] = set()
    for r in _finals(group):
        for t in (r.final_result() or {}).get("tasks", []):
            ks.update(int(c["episodes"]) for c in t.get("curve", []))
    return sorted(ks)


def _row(group: Group, resamples: int, seed: int) -> dict[str, Any]:
    finals = _finals(group)
    key = _score_key(group)
    scores = group.final_scores(key)
    zs = group.final_scores("zero_shot_return")
    row: dict[str, Any] = {
        "algo": group.algo,
        "label": group.label,
        "seeds": [r.seed for r in finals],
        "env_steps": sorted({int(r.final["env_steps"]) for r in finals if r.final}),
        "tasks": int(scores.shape[1]),
        "score": key,
        "zero_shot": float(zs.mean()),
        "adapted": None,
        "paired_difference": None,
        "paired_difference_se": None,
        "iqm": stats.iqm(scores),
        "iqm_ci": list(stats.stratified_bootstrap_ci(scores, reps=resamples, seed=seed)),
        "curve": {},
        "success_curve": {},
        "new_task_steps": None,
        "p_improvement": None,
        "p_improvement_ci": None,
    }
    if key == "adapted_return":
        diffs = group.final_scores("paired_difference")
        per_seed = diffs.mean(axis=1)
        row["adapted"] = float(scores.mean())
        row["paired_difference"] = float(per_seed.mean())
        spread = per_seed if len(per_seed) > 1 else diffs[0]
        row["paired_difference_se"] = standard_error(spread)
        row["new_task_steps"] = float(group.final_scores("new_task_steps").mean())
    for k in _curve_ks(group):
        values = group.final_scores(f"k{k}")
        if values.size:
            row["curve"][str(k)] = float(values.mean())
        success = group.final_scores(f"success_k{k}")
        if success.size:
            row["success_curve"][str(k)] = float(success.mean())
    row.update(_success(group))
    row["_scores"] = scores
    return row


def _success(group: Group) -> dict[str, Any]:
    """Success rates (families whose episodes report `info["success"]`, e.g. Meta-World): the
    fraction of successful scored episodes, zero-shot and adapted, over seeds and tasks, and per
    environment class where tasks have one."""
    out: dict[str, Any] = {"zero_shot_success": None, "adapted_success": None}
    out["success_by_class"] = {}
    for kind in ("zero_shot", "adapted"):
        values = group.final_scores(f"{kind}_success")
        if values.size:
            out[f"{kind}_success"] = float(values.mean())
        per_class: dict[str, list[float]] = {}
        for r in _finals(group):
            classes = r.final_task_classes()
            for i, v in r.final_task_values(f"{kind}_success").items():
                if i in classes:
                    per_class.setdefault(classes[i], []).append(v)
        for cls, vs in per_class.items():
            out["success_by_class"].setdefault(cls, {})[kind] = sum(vs) / len(vs)
    return out


def group_task_count(group: Group) -> int:
    """Test tasks per run of the group's final evaluations (they must agree)."""
    return int(group.final_scores("zero_shot_return").shape[1])


def report_rows(
    groups: Sequence[Group], baseline: str | None, resamples: int = 2000, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """env -> one row per group with a final evaluation (see the module docstring)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for env in sorted({g.env for g in groups}):
        usable = [g for g in groups if g.env == env and _finals(g)]
        if not usable:
            continue
        counts = {g.label: group_task_count(g) for g in usable}
        if len(set(counts.values())) > 1:
            shown = "; ".join(f"{k}: {v} tasks" for k, v in counts.items())
            raise ValueError(
                f"{env}: the runs scored different numbers of test tasks ({shown}); report "
                "runs made with the same final_eval_tasks together"
            )
        rows = [_row(g, resamples, seed) for g in usable]
        base = [r for r in rows if r["algo"] == baseline]
        if baseline is not None and base:
            for r in rows:
                x, y = r["_scores"], base[0]["_scores"]
                r["p_improvement"] = stats.probability_of_improvement(x, y)
                r["p_improvement_ci"] = list(
                    stats.stratified_bootstrap_ci_pair(x, y, reps=resamples, seed=seed)
                )
        out[env] = rows
    return out


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def to_markdown(tables: dict[str, list[dict[str, Any]]], baseline: str | None) -> str:
    parts = []
    for env, rows in tables.items():
        ks = sorted({int(k) for r in rows for k in r["curve"]})
        header = [
            "algorithm",
            "seeds",
            "env steps",
            "zero-shot",
            "adapted",
            "adapted - zero-shot (± s.e.)",
            "IQM [95% CI]",
        ]
        header += [f"K={k}" for k in ks] + ["new-task steps"]
        success = any(r["zero_shot_success"] is not None for r in rows)
        success_ks = sorted({int(k) for r in rows for k in r["success_curve"]})
        if success:
            header += ["success zero-shot", "success adapted"]
            header += [f"success K={k}" for k in success_ks]
        if baseline is not None:
            header.append(f"P(> {baseline}) [95% CI]")
        lines = [f"### {env}", "", "| " + " | ".join(header) + " |"]
        lines.append("|---|" + "---:|" * (len(header) - 1))
        for r in rows:
            steps = "-".join(str(s) for s in (r["env_steps"][0], r["env_steps"][-1]))
            steps = str(r["env_steps"][0]) if len(r["env_steps"]) == 1 else steps
            diff = (
                "-"
                if r["paired_difference"] is None
                else f"{_num(r['paired_difference'], 2)} ± {_num(r['paired_difference_se'], 2)}"
            )
            lo, hi = r["iqm_ci"]
            cells = [
                r["label"],
                str(len(r["seeds"])),
                steps,
                _num(r["zero_shot"]),
                _num(r["adapted"]),
                diff,
                f"{_num(r['iqm'])} [{_num(lo)}, {_num(hi)}]",
            ]
            cells += [_num(r["curve"].get(str(k))) for k in ks]
            cells.append(_num(r["new_task_steps"], 0))
            if success:
                cells += [_percent(r["zero_shot_success"]), _percent(r["adapted_success"])]
                cells += [_percent(r["success_curve"].get(str(k))) for k in success_ks]
            if baseline is not None:
                p, ci = r["p_improvement"], r["p_improvement_ci"]
                cells.append("-" if p is None else f"{p:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]")
            lines.append("| " + " | ".join(cells) + " |")
        tasks = sorted({r["tasks"] for r in rows})
        lines += [
            "",
            f"{', '.join(map(str, tasks))} test tasks per seed; IQM and P over seed x "
            "task scores (the adapted score where an algorithm adapts, else zero-shot).",
        ]
        if success:
            lines.append(
                "Success: the share of scored episodes with info['success'] = 1 at some step."
            )
        lines += _class_table(rows)
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _percent(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _class_table(rows: list[dict[str, Any]]) -> list[str]:
    """Success rate per environment class (zero-shot / adapted), one column per algorithm;
    nothing for families without classes or with one."""
    classes = sorted({c for r in rows for c in r["success_by_class"]})
    if len(classes) < 2:
        return []
    lines = ["", "| class | " + " | ".join(r["label"] for r in rows) + " |"]
    lines.append("|---|" + "---:|" * len(rows))
    for cls in classes:
        cells = []
        for r in rows:
            v = r["success_by_class"].get(cls, {})
            cells.append(f"{_percent(v.get('zero_shot'))} / {_percent(v.get('adapted'))}")
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    lines += ["", "Success rate per class of test tasks: zero-shot / adapted."]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mql report",
        description="Final evaluations of run directories as a markdown table per environment.",
    )
    p.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="run directories, or folders holding them (up to two levels down)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="ALGO",
        help="algorithm the probability of improvement is measured against",
    )
    p.add_argument(
        "--resamples",
        type=int,
        default=2000,
        help="bootstrap resamples of the intervals (default: 2000)",
    )
    p.add_argument(
        "--at-step",
        type=int,
        default=None,
        metavar="N",
        help="report each run's last evaluation at or before N environment steps (periodic "
        "or final) instead of its final one: runs compared at one budget",
    )
    p.add_argument("--json", action="store_true", help="print the numbers as JSON instead")
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if ns.resamples <= 0:
        raise ValueError(f"--resamples must be positive, got {ns.resamples}")
    if ns.at_step is not None and ns.at_step <= 0:
        raise ValueError(f"--at-step must be positive, got {ns.at_step}")
    loaded = [load_run(d) for d in find_run_dirs(ns.dirs)]
    if ns.at_step is None:
        what = "a final_eval.json with test results (runs still training, or not finished)"
        missing = "has no final evaluation yet"
    else:
        what = f"an evaluation at or before step {ns.at_step}"
        missing = f"has no evaluation at or before step {ns.at_step}"
    kept: list[Run] = []
    notes: list[str] = []
    for run in loaded:
        if ns.at_step is None and run.final_superseded():
            final = (run.final or {}).get("env_steps")
            notes.append(
                f"{run.path} was resumed past its final evaluation (at {final} steps; latest "
                f"evaluation at {run.last_eval_step()}); left out: --at-step compares runs at "
                "one budget"
            )
            continue
        scored = run if ns.at_step is None else run.at_step(ns.at_step)
        if scored is not None and scored.final_result() is not None:
            kept.append(scored)
        else:
            notes.append(f"{run.path} {missing}; left out")
    if not kept:
        raise ValueError(
            f"no final evaluations to report: none of the {len(loaded)} run(s) has {what}"
        )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    groups = group_runs(kept)
    check_unique_seeds(groups)
    algos = {g.algo for g in groups}
    if ns.baseline is not None and ns.baseline not in algos:
        raise ValueError(f"--baseline {ns.baseline}: no such runs among {', '.join(sorted(algos))}")
    tables = report_rows(groups, ns.baseline, ns.resamples)
    if ns.json:
        clean = {
            env: [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
            for env, rows in tables.items()
        }
        print(json.dumps(clean, indent=1))
    else:
        print(to_markdown(tables, ns.baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
