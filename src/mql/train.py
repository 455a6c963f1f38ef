"""The training driver: iterations, periodic evaluation, logging, checkpoints and exact resume.

The driver is the same for every algorithm: it calls `run_iteration()` until `total_steps`
environment steps, evaluates through the shared protocol every `eval_every` steps (and on all
test tasks at the end, into `final_eval.json`), logs through `runs.Logger` and writes the full
state (algorithm and driver counters) to `checkpoints/latest.ckpt` after each evaluation and at
the end. Resuming loads that checkpoint, drops log rows written after it, and continues; the
rows that follow are those a single uninterrupted run would have written (timing columns aside).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from mql import checkpoint, runs
from mql.algos.mql import MQL
from mql.config import MQLConfig

# Columns that depend on wall-clock time, not on the seed (excluded from resume comparisons).
TIMING_PREFIXES = ("time/", "wall_s", "steps_per_s")


def make_algorithm(cfg: Any) -> Any:
    """The algorithm object for `cfg.algo`: PEARL for "pearl", else MQL (all its variants)."""
    if cfg.algo == "pearl":
        from mql.algos.pearl import PEARL

        return PEARL(cfg)
    return MQL(cfg)


class Progress:
    """A live progress line (rich) on a terminal; one plain line per evaluation otherwise."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.live = enabled and sys.stderr.isatty()
        self._bar = None
        self.latest = ""
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} steps/s"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[latest]}"),
                transient=False,
            )
            self._task = self._bar.add_task(label, total=total, rate="-", latest="")
            self._bar.start()

    def update(self, steps: int, rate: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=min(steps, self.total), rate=f"{rate:,.0f}")

    def evaluation(self, steps: int, summary: dict[str, float]) -> None:
        parts = [f"zero-shot {summary['test/zero_shot_return']:.1f}"]
        if "test/adapted_return" in summary:
            parts.append(f"adapted {summary['test/adapted_return']:.1f}")
        self.latest = "test: " + ", ".join(parts)
        if self._bar is not None:
            self._bar.update(self._task, latest=self.latest)
        elif self.enabled:
            print(f"[{self.label}] {steps}/{self.total} steps  {self.latest}", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def train(
    cfg: MQLConfig, run_dir: Path, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train `cfg` in `run_dir` (created beforehand by `runs.create`, or resumed)."""
    algo = make_algorithm(cfg)
    driver = {"iteration": 0, "next_eval": cfg.eval_every, "eval_index": 0, "wall_s": 0.0}
    logger = runs.Logger(run_dir)
    if resume:
        saved = checkpoint.load(run_dir / runs.CHECKPOINT)
        algo.load_state_dict(saved["algo"])
        driver.update(saved["driver"])
        logger.truncate_after(algo.env_steps)
    bar = Progress(cfg.total_steps, f"{cfg.env} {cfg.algo} s{cfg.seed}", progress)
    bar.update(algo.env_steps, 0.0)
    try:
        start = time.perf_counter() - float(driver["wall_s"])
        while algo.env_steps < cfg.total_steps:
            before, t0 = algo.env_steps, time.perf_counter()
            metrics = algo.run_iteration()
            driver["iteration"] += 1
            dt = time.perf_counter() - t0
            rate = (algo.env_steps - before) / max(dt, 1e-9)
            logger.log_metrics(
                algo.env_steps,
                {
                    "iteration": driver["iteration"],
                    **metrics,
                    "wall_s": time.perf_counter() - start,
                    "steps_per_s": rate,
                },
            )
            bar.update(algo.env_steps, rate)
            if algo.env_steps >= driver["next_eval"]:
                results = algo.evaluate(int(driver["eval_index"]))
                summary = _merge(r.summary() for r in results)
                logger.log_eval(
                    algo.env_steps, summary, {"results": [r.to_dict() for r in results]}
                )
                bar.evaluation(algo.env_steps, summary)
                driver["eval_index"] += 1
                steps_ahead = math.floor(algo.env_steps / cfg.eval_every) + 1
                driver["next_eval"] = steps_ahead * cfg.eval_every
                driver["wall_s"] = time.perf_counter() - start
                _save(run_dir, algo, driver)
        driver["wall_s"] = time.perf_counter() - start
        _save(run_dir, algo, driver)
        final = algo.evaluate(int(driver["eval_index"]), final=True)
        summary = _merge(r.summary() for r in final)
        (run_dir / "final_eval.json").write_text(
            json.dumps(
                {
                    "env_steps": algo.env_steps,
                    "summary": summary,
                    "results": [r.to_dict() for r in final],
                },
                indent=1,
            )
        )
        bar.evaluation(algo.env_steps, summary)
        return summary
    finally:
        bar.close()
        logger.close()


def _merge(parts: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in parts:
        out.update(p)
    return out


def _save(run_dir: Path, algo: MQL, driver: dict[str, Any]) -> None:
    checkpoint.save(run_dir / runs.CHECKPOINT, {"algo": algo.state_dict(), "driver": driver})
