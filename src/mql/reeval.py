"""Evaluate a run's kept checkpoints as one of its variants, into a run directory of their own.

The context variants of MQL (td3-context, mql, mql-no-eq19, mql-fixed-lambda) meta-train
identically and differ only in adaptation, so one meta-training run with kept checkpoints
(`checkpoint_every`) serves them all: `reevaluate(run, "mql-no-eq19", out)` scores every kept
checkpoint with the variant's adaptation, through the run's own periodic evaluation (the same
tasks and paired episodes as the run's `eval.csv`), and writes `out/` as a run directory that
`mql report` and `mql plot` read like any other: `config.json` (the variant's config),
`eval.csv` and `evals/step_N.json` (one row per kept checkpoint), and `final_eval.json` (the
run's final checkpoint on all test tasks, as the driver's final evaluation). No checkpoints are
written. A checkpoint already evaluated in `out/` is skipped, so an interrupted re-evaluation
continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mql
import mql.envs
from mql import checkpoint, runs
from mql.algos import registry
from mql.algos.config_base import BaseConfig
from mql.config import to_dict
from mql.evaluate import eval_task_indices, merged_summary
from mql.results import FINAL_EVAL

__all__ = ["ReevalError", "reevaluate", "variant_config"]


class ReevalError(ValueError):
    """A re-evaluation that cannot run (one line, naming the cause)."""


def variant_config(
    run_dir: Path, variant: str | None, overrides: dict[str, Any] | None = None
) -> BaseConfig:
    """The run's config as `variant` (None: its own algorithm), with evaluation `overrides`
    (e.g. `eval_adapt_episodes`, `eval_train_tasks`), validated."""
    cfg = runs.read_config(run_dir)
    if variant is not None and variant != cfg.algo:
        if variant not in registry.variants(cfg.algo):
            raise ReevalError(
                f"{run_dir}: a {cfg.algo} run can be evaluated as "
                + ", ".join(registry.variants(cfg.algo))
                + f", not {variant}"
            )
        cfg = cfg.as_variant(variant)
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
        cfg.validate()
    return cfg


def _thin(kept: list[tuple[int, Path]], every: int) -> list[tuple[int, Path]]:
    """The first of `kept` (sorted by steps) at or after each multiple of `every` (0: all)."""
    if every <= 0:
        return kept
    out, last = [], 0
    for steps, path in kept:
        if steps // every > last:
            out.append((steps, path))
            last = steps // every
    return out


def _done_steps(out: Path) -> set[int]:
    return {int(p.stem.split("_")[1]) for p in (out / "evals").glob("step_*.json")}


def reevaluate(
    run_dir: Path,
    variant: str | None,
    out: Path,
    overrides: dict[str, Any] | None = None,
    final: bool = True,
    every: int = 0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Evaluate `run_dir`'s kept checkpoints as `variant` into `out` (see the module
    docstring); `every` > 0: only the first kept checkpoint at or after each multiple of
    `every` steps (iterations overshoot the period, so kept steps are rarely round); with
    `final`, also its final checkpoint on all test tasks. Returns `out`."""
    cfg = variant_config(run_dir, variant, overrides)
    kept = _thin(runs.kept_checkpoints(run_dir), every)
    if not kept and not final:
        raise ReevalError(f"{run_dir} keeps no checkpoints (train with --checkpoint-every)")
    if (out / runs.CONFIG).is_file():
        existing = json.loads((out / runs.CONFIG).read_text())
        if existing.get("reevaluated_from") != str(run_dir) or existing["config"] != to_dict(cfg):
            raise ReevalError(
                f"{out} holds another evaluation (of {existing.get('reevaluated_from')}, or with "
                "another config); choose another output directory"
            )
    elif out.exists() and any(out.iterdir()):
        raise ReevalError(f"{out} exists and is not a re-evaluation directory")
    out.mkdir(parents=True, exist_ok=True)
    runs.write_config(out, cfg, reevaluated_from=str(run_dir))
    done = _done_steps(out)
    logger = runs.Logger(out, tensorboard=False)
    try:
        for index, (steps, path) in enumerate(kept):
            if steps in done:
                continue
            start = time.perf_counter()
            agent = registry.make_agent(cfg, checkpoint.load(path)["algo"])
            results = agent.evaluate(index)
            agent.close()
            summary = merged_summary(r.summary() for r in results)
            detail = {"checkpoint": str(path), "results": [r.to_dict() for r in results]}
            logger.log_eval(steps, summary, detail)
            if log is not None:
                log(f"{out.name}: {steps} steps in {time.perf_counter() - start:.0f} s")
    finally:
        logger.close()
    latest = run_dir / runs.CHECKPOINT
    if final and not (out / FINAL_EVAL).is_file():
        if not latest.is_file():
            raise ReevalError(f"{run_dir} has no {runs.CHECKPOINT}")
        (out / FINAL_EVAL).write_text(json.dumps(_final(cfg, latest, out), indent=1))
    return out


def _final(cfg: BaseConfig, latest: Path, out: Path) -> dict[str, Any]:
    """The final evaluation of `latest`; taken from the periodic one of the same checkpoint
    when that scored the same tasks (e.g. every family with at most `eval_tasks` test tasks)."""
    saved = checkpoint.load(latest)
    steps = int(saved["algo"]["env_steps"])
    periodic = out / "evals" / f"step_{steps}.json"
    if periodic.is_file():
        env = mql.envs.make(cfg.env, seed=cfg.seed if cfg.task_seed is None else cfg.task_seed)
        if eval_task_indices(cfg, env, True) == eval_task_indices(cfg, env, False):
            results = json.loads(periodic.read_text())["results"]
            summary = merged_summary(r["summary"] for r in results)
            return {"env_steps": steps, "summary": summary, "results": results}
    agent = registry.make_agent(cfg, saved["algo"])
    evaluated = agent.evaluate(0, final=True)
    agent.close()
    summary = merged_summary(r.summary() for r in evaluated)
    return {
        "env_steps": agent.env_steps,
        "summary": summary,
        "results": [r.to_dict() for r in evaluated],
    }
