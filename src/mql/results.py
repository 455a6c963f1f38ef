"""Results of run directories as data: find runs, load their configs, evaluation rows and
per-task scores, and group the seeds of one experiment (used by `mql plot`, `mql report`, and
from Python).

    from mql.results import find_run_dirs, load_run, group_runs
    groups = group_runs([load_run(d) for d in find_run_dirs([Path("runs")])])
    for g in groups:
        print(g.env, g.label, [r.seed for r in g.runs], g.final_scores("adapted_return").shape)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mql import runs

__all__ = [
    "FINAL_EVAL",
    "Group",
    "Run",
    "check_unique_seeds",
    "find_run_dirs",
    "group_runs",
    "load_run",
]

FINAL_EVAL = "final_eval.json"

# Config fields that do not make two runs different experiments (seeds are averaged over;
# total_steps may differ after a resume; updates_per_call does not change the numerics; the
# evaluation schedule changes where a curve is sampled, not what is trained; eval_batched
# computes the same evaluation, to float rounding).
_NOT_A_VARIANT = frozenset(
    {
        "seed",
        "task_seed",
        "total_steps",
        "updates_per_call",
        "eval_every",
        "eval_tasks",
        "eval_train_tasks",
        "final_eval_tasks",
        "eval_adapt_episodes",
        "eval_batched",
    }
)

# Fields added to every config after runs were stored, with the value that older runs had in
# effect: a run stored before the field existed is the same experiment as one stored with that
# value (else grouping would split them into "<field>=None" and "<field>=<value>").
_ADDED_FIELDS: dict[str, Any] = {"eval_protocol": "paired", "eval_batched": False}


@dataclass
class Run:
    """One run directory: its config (as stored), its eval.csv rows, its final evaluation."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, str]]
    final: dict[str, Any] | None = None

    @property
    def env(self) -> str:
        return str(self.config.get("env", "?"))

    @property
    def algo(self) -> str:
        return str(self.config.get("algo", "?"))

    @property
    def seed(self) -> Any:
        return self.config.get("seed", "?")

    def series(self, column: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(env_steps, values) of the rows with a number in `column`, or None if there are none."""
        xs, ys = [], []
        for r in self.rows:
            try:
                x, y = float(r["env_steps"]), float(r.get(column) or "nan")
            except (KeyError, ValueError):
                continue
            if math.isfinite(x) and math.isfinite(y):
                xs.append(x)
                ys.append(y)
        if not xs:
            return None
        order = np.argsort(xs, kind="stable")
        return np.asarray(xs)[order], np.asarray(ys)[order]

    def _periodic_files(self) -> dict[int, Path]:
        """env steps -> evals/step_<N>.json, the run's periodic evaluations."""
        files: dict[int, Path] = {}
        for f in (self.path / "evals").glob("step_*.json"):
            try:
                files[int(f.stem.split("_", 1)[1])] = f
            except ValueError:
                continue
        return files

    def task_series(
        self, key: str, split: str = "test"
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """task index -> (env_steps, values of `key`) over the periodic evaluations
        (evals/step_N.json), for the tasks that every evaluation scored (all of them since the
        paired protocol fixed the evaluated tasks of a run)."""
        per_step: dict[int, dict[int, float]] = {}
        for step, f in self._periodic_files().items():
            try:
                detail = json.loads(f.read_text())
            except json.JSONDecodeError:
                continue
            for res in detail.get("results", []):
                if res.get("split") == split:
                    values = {int(t["task_index"]): t.get(key) for t in res.get("tasks", [])}
                    per_step[step] = {i: float(v) for i, v in values.items() if v is not None}
        if not per_step:
            return {}
        steps = sorted(per_step)
        shared = set.intersection(*(set(per_step[s]) for s in steps))
        xs = np.asarray(steps, np.float64)
        return {i: (xs, np.asarray([per_step[s][i] for s in steps])) for i in sorted(shared)}

    def at_step(self, step: int) -> Run | None:
        """This run as it stood at `step` environment steps: its last evaluation at or before
        `step` (the final one, or a periodic one from evals/step_N.json) in the final
        evaluation's place, or None if it has none. Compares runs at one budget."""
        found: dict[int, Any] = dict(self._periodic_files())
        if self.final is not None:
            found[int(self.final.get("env_steps", -1))] = self.final  # preferred at its step
        at = [s for s in found if 0 <= s <= step]
        if not at:
            return None
        best = found[max(at)]
        if isinstance(best, Path):
            try:
                best = {"env_steps": max(at), **json.loads(best.read_text())}
            except json.JSONDecodeError as e:
                raise ValueError(f"{best} is unreadable: {e}") from e
        return replace(self, final=best)

    def last_eval_step(self) -> int | None:
        """The environment steps of the latest periodic evaluation, if any."""
        return max(self._periodic_files(), default=None)

    def final_superseded(self) -> bool:
        """Whether final_eval.json is from an earlier budget: the run was resumed to a larger
        one (`mql train --resume --total-steps`) and has evaluated past it since."""
        last = self.last_eval_step()
        if self.final is None or last is None:
            return False
        return int(self.final.get("env_steps", -1)) < last

    def final_result(self, split: str = "test") -> dict[str, Any] | None:
        """The final evaluation of `split` (per-task results and summary), if written."""
        if self.final is None:
            return None
        for res in self.final.get("results", []):
            if res.get("split") == split:
                return res
        return None

    def final_task_values(self, key: str, split: str = "test") -> dict[int, float]:
        """task index -> the final evaluation's value of `key` for it ("zero_shot_return",
        "adapted_return", "paired_difference", "new_task_steps", "zero_shot_success",
        "adapted_success" (families that report success), "k<K>" for the return after K
        new-task episodes, or "success_k<K>" for their success rate)."""
        res = self.final_result(split)
        if res is None:
            return {}
        out: dict[int, float] = {}
        for t in res.get("tasks", []):
            curve_key = key.removeprefix("success_")
            if curve_key.startswith("k") and curve_key[1:].isdigit():
                k = int(curve_key[1:])
                points = [c for c in t.get("curve", []) if c.get("episodes") == k]
                field = "success" if key.startswith("success_") else "return"
                value = points[0].get(field) if points else None
            else:
                value = t.get(key)
            if value is not None:
                out[int(t["task_index"])] = float(value)
        return out

    def final_task_classes(self, split: str = "test") -> dict[int, str]:
        """task index -> its environment class in the final evaluation (families with classes,
        e.g. Meta-World's; empty for the others)."""
        res = self.final_result(split) or {}
        return {
            int(t["task_index"]): str(t["task_class"])
            for t in res.get("tasks", [])
            if t.get("task_class") is not None
        }


@dataclass
class Group:
    """The seeds of one experiment: one env, one algorithm, one set of config values."""

    env: str
    algo: str
    variant: tuple[tuple[str, Any], ...]
    runs: list[Run] = field(default_factory=list)

    def final_scores(self, key: str, split: str = "test") -> np.ndarray:
        """(runs, tasks) of the final evaluation's `key` (see `Run.final_task_values`); runs
        without a final evaluation are left out. Column j holds each run's j-th evaluated task
        (by task index): with task sets drawn from each run's seed these are different tasks,
        exchangeable draws from the family, so the columns are the strata of the stratified
        bootstrap. Runs that evaluated different numbers of tasks raise ValueError."""
        per_run = [v for r in self.runs if (v := r.final_task_values(key, split))]
        if not per_run:
            return np.empty((0, 0))
        return _columns([[v[t] for t in sorted(v)] for v in per_run], f"{self.env} {self.label}")

    @property
    def label(self) -> str:
        if not self.variant:
            return self.algo
        return f"{self.algo} ({', '.join(f'{k}={_fmt(v)}' for k, v in self.variant)})"


def _fmt(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "x".join(str(x) for x in v)
    return str(v)


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Run directories named by `paths` (themselves, or up to two levels below them)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory")
        if (path / runs.CONFIG).is_file():
            here = [path]
        else:
            below = (*path.glob(f"*/{runs.CONFIG}"), *path.glob(f"*/*/{runs.CONFIG}"))
            here = sorted({c.parent for c in below})
        if not here:
            raise ValueError(
                f"no run directories in {path} (looked for {runs.CONFIG} up to two levels down)"
            )
        found.extend(here)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def load_run(path: Path) -> Run:
    """The config, eval.csv rows and final_eval.json of run directory `path`."""
    try:
        config = json.loads((path / runs.CONFIG).read_text())["config"]
        if not isinstance(config, dict):
            raise TypeError("'config' is not an object")
        for name, value in _ADDED_FIELDS.items():
            config.setdefault(name, value)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path / runs.CONFIG} is unreadable: {e}") from e
    eval_csv = path / runs.EVAL
    rows = runs.read_csv(eval_csv) if eval_csv.is_file() else []
    final = None
    if (path / FINAL_EVAL).is_file():
        try:
            final = json.loads((path / FINAL_EVAL).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path / FINAL_EVAL} is unreadable: {e}") from e
    return Run(path, config, rows, final)


def group_runs(all_runs: Sequence[Run]) -> list[Group]:
    """Groups by (env, algo, config values that differ between the runs of that env and algo).

    Variants are found within one algorithm only: two algorithms have different config fields
    (PEARL's are not MQL's), which is not a difference worth a label."""
    by_algo: dict[tuple[str, str], list[Run]] = {}
    for r in all_runs:
        by_algo.setdefault((r.env, r.algo), []).append(r)
    groups: dict[tuple[Any, ...], Group] = {}
    for (env, algo), same in by_algo.items():
        keys = sorted({k for r in same for k in r.config} - _NOT_A_VARIANT - {"env", "algo"})
        varying = [k for k in keys if len({json.dumps(r.config.get(k)) for r in same}) > 1]
        for r in same:
            variant = tuple((k, _hashable(r.config.get(k))) for k in varying)
            key = (env, algo, variant)
            groups.setdefault(key, Group(env, algo, variant)).runs.append(r)
    return sorted(groups.values(), key=lambda g: (g.env, g.algo, repr(g.variant)))


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _columns(rows: list[list[float]], what: str) -> np.ndarray:
    counts = sorted({len(r) for r in rows})
    if len(counts) > 1:
        raise ValueError(
            f"{what}: the runs evaluated different numbers of tasks ({counts}); compare runs "
            "made with the same evaluation settings"
        )
    return np.array(rows, np.float64)


def check_unique_seeds(groups: Sequence[Group]) -> None:
    """Raise ValueError when a group holds two runs of one seed (they are not two samples)."""
    for g in groups:
        seen: dict[Any, Path] = {}
        for r in g.runs:
            if r.seed in seen:
                raise ValueError(
                    f"{g.env} {g.label}: seed {r.seed} appears twice ({seen[r.seed]} and "
                    f"{r.path}); give each seed once"
                )
            seen[r.seed] = r.path
