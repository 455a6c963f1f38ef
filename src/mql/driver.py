"""The training driver: iterations, periodic evaluation, logging, checkpoints and exact resume.

The driver is the same for every algorithm: it calls `run_iteration()` until `total_steps`
environment steps, evaluates through the shared protocol every `eval_every` steps (and on all
test tasks at the end, into `final_eval.json`), logs through `runs.Logger` and writes the full
state (algorithm and driver counters) to `checkpoints/latest.ckpt` after each evaluation and at
the end, and keeps a copy every `checkpoint_every` steps (`checkpoints/step_<steps>.ckpt`).
Resuming loads `latest.ckpt`, drops log rows written after it, and continues; the rows that follow
are those a single uninterrupted run would have written (timing columns aside).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from mql import checkpoint, runs
from mql.algos.agent import Algorithm
from mql.algos.config_base import BaseConfig
from mql.algos.registry import make_agent
from mql.evaluate import merged_summary
from mql.progress import Progress

__all__ = ["train"]


def train(
    cfg: BaseConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    wandb: bool = False,
) -> dict[str, float]:
    """Train `cfg` in `run_dir` (created beforehand by `runs.create`, or resumed); returns the
    final evaluation's summary. `wandb`: also log to Weights & Biases (`runs.Logger`). The run
    directory's lock is held throughout (`runs.holding_lock`): a second process training into
    it is refused."""
    with runs.holding_lock(run_dir):
        return _train(cfg, run_dir, resume, progress, wandb)


def _train(
    cfg: BaseConfig, run_dir: Path, resume: bool, progress: bool, wandb: bool
) -> dict[str, float]:
    algo = make_agent(cfg)
    driver = {
        "iteration": 0,
        "next_eval": cfg.eval_every,
        "eval_index": 0,
        "wall_s": 0.0,
        "next_keep": cfg.checkpoint_every,
    }
    purge = None
    if resume:
        saved = checkpoint.load(run_dir / runs.CHECKPOINT)
        algo.load_state_dict(saved["algo"])
        driver.update(saved["driver"])
        purge = algo.env_steps + 1  # TensorBoard events logged after the checkpoint go
    logger = runs.Logger(run_dir, purge_step=purge, wandb_config=cfg.to_dict() if wandb else None)
    if resume:
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
            bar.update(algo.env_steps, rate, warmup=bool(metrics.get("warmup")))
            evaluated = algo.env_steps >= driver["next_eval"]
            if evaluated:
                results = algo.evaluate(int(driver["eval_index"]))
                summary = merged_summary(r.summary() for r in results)
                logger.log_eval(
                    algo.env_steps, summary, {"results": [r.to_dict() for r in results]}
                )
                bar.evaluation(algo.env_steps, summary)
                driver["eval_index"] += 1
                steps_ahead = math.floor(algo.env_steps / cfg.eval_every) + 1
                driver["next_eval"] = steps_ahead * cfg.eval_every
            keep = bool(cfg.checkpoint_every) and algo.env_steps >= driver["next_keep"]
            if keep:
                steps_ahead = math.floor(algo.env_steps / cfg.checkpoint_every) + 1
                driver["next_keep"] = steps_ahead * cfg.checkpoint_every
            if evaluated or keep:
                driver["wall_s"] = time.perf_counter() - start
                _save(run_dir, algo, driver, keep=keep)
        driver["wall_s"] = time.perf_counter() - start
        _save(run_dir, algo, driver)
        final = algo.evaluate(int(driver["eval_index"]), final=True)
        summary = merged_summary(r.summary() for r in final)
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
        bar.evaluation(algo.env_steps, summary, final=True)
        return summary
    finally:
        bar.close()
        logger.close()
        algo.close()


def _save(run_dir: Path, algo: Algorithm, driver: dict[str, Any], keep: bool = False) -> None:
    """Write `latest.ckpt`; with `keep`, also `step_<env_steps>.ckpt` beside it."""
    payload = {"algo": algo.state_dict(), "driver": driver}
    checkpoint.save(run_dir / runs.CHECKPOINT, payload)
    if keep:
        checkpoint.save(run_dir / runs.kept_checkpoint(algo.env_steps), payload)
