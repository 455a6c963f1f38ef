"""Evaluate the Fig. 4 meta-training runs (benchmarks/fig4_train.sh) as every variant.

    python benchmarks/fig4_eval.py [RUN_ROOT] [DEST]      (defaults: ~/mql-runs/fig4 docs/data/fig4)

Each run (mql, paper preset) is re-evaluated from its kept checkpoints as td3-context, mql,
mql-no-eq19 and mql-fixed-lambda (λ = 0.5) on the run's own evaluation tasks and paired
episodes, with the return after K = 0, 1, 2 new-task episodes and no training tasks, into
DEST/<env>__<variant>__seed<S>/ (what `mql report` and `mql plot` read; `mql.reeval`). An
interrupted evaluation continues where it stopped, and a run still training gets its kept
checkpoints evaluated (its final evaluation once it has finished), so the script can be run
again as checkpoints appear.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mql import runs
from mql.reeval import ReevalError, reevaluate
from mql.results import FINAL_EVAL, find_run_dirs

VARIANTS = ("td3-context", "mql", "mql-no-eq19", "mql-fixed-lambda")
# One task at a time, as the committed seed 0-1 data were evaluated (the batched schedule
# agrees within float rounding, docs/performance.md "Evaluation", but not bit for bit).
OVERRIDES = {"eval_adapt_episodes": (0, 1, 2), "eval_train_tasks": 0, "eval_batched": False}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, nargs="?", default=Path.home() / "mql-runs" / "fig4")
    p.add_argument("dest", type=Path, nargs="?", default=Path("docs/data/fig4"))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--no-final", action="store_true", help="skip the final all-task evaluation")
    p.add_argument(
        "--every",
        type=int,
        default=0,
        help="only the first kept checkpoint at or after each multiple of this many steps",
    )
    ns = p.parse_args(argv)
    try:
        for run in find_run_dirs([ns.root]):
            cfg = runs.read_config(run)
            finished = (run / FINAL_EVAL).is_file()
            for variant in ns.variants:
                out = ns.dest / f"{cfg.env}__{variant}__seed{cfg.seed}"
                try:
                    reevaluate(
                        run,
                        variant,
                        out,
                        OVERRIDES,
                        final=not ns.no_final and finished,
                        every=ns.every,
                        log=lambda m: print(m, flush=True),
                    )
                except ReevalError as e:
                    if finished:
                        raise
                    print(f"{run}: skipped while it trains ({e})", flush=True)
                    break
    except (ReevalError, ValueError) as e:
        print(f"fig4_eval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
