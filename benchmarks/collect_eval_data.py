"""Copy the evaluation data of run directories (never checkpoints) into a folder of docs/data.

    python benchmarks/collect_eval_data.py RUN_ROOT DEST

For every run directory below RUN_ROOT (up to two levels), DEST/<run name>/ gets its
config.json, eval.csv, final_eval.json and evals/step_N.json: what `mql report` and `mql plot`
read, so the tables and figures in docs/ can be remade from the repository alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mql.results import FINAL_EVAL, find_run_dirs
from mql.runs import CONFIG, EVAL


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("dest", type=Path)
    ns = p.parse_args(argv)
    try:
        dirs = find_run_dirs([ns.root])
    except ValueError as e:
        print(f"collect_eval_data: error: {e}", file=sys.stderr)
        return 2
    for run in dirs:
        out = ns.dest / run.name
        (out / "evals").mkdir(parents=True, exist_ok=True)
        for name in (CONFIG, EVAL, FINAL_EVAL):
            if (run / name).is_file():
                shutil.copy2(run / name, out / name)
        for f in sorted((run / "evals").glob("step_*.json")):
            shutil.copy2(f, out / "evals" / f.name)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
