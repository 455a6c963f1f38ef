#!/usr/bin/env bash
# Meta-World ML1 results (docs/results.md, "Meta-World"): MQL (evaluated also as TD3-context, the
# same meta-training) and PEARL on ML1 reach and ML1 push, seed 0, each run's evaluations under
# Meta-World's protocol (10 adaptation episodes, then 3 scored episodes per test goal, success
# rates); then the evaluation data into docs/data/metaworld/, the report and the figures.
#
#   bash benchmarks/metaworld_ml1.sh [RUN_ROOT]      (default: ~/mql-runs/metaworld)
#   TOTAL=200000 TASKS="reach push" ALGOS="mql pearl" SEEDS=0 EVAL_TASKS=10 EVAL_EVERY=TOTAL/4
#   (environment variables, these are the defaults; any algorithm of `mql train` works:
#   the on-policy baselines were run with ALGOS=rl2 TOTAL=1000000 and
#   ALGOS="maml-trpo promp" TOTAL=600000, both with EVAL_EVERY=TOTAL/2, docs/results.md);
#   TRAIN_ARGS: more `mql train` arguments for new runs (the recorded RL2 runs sampled with
#   the compiled step, RL2's default before 2026-12-06: TRAIN_ARGS="--sampler-policy jax")
#
# Needs the metaworld extra, in an environment of its own (it pins MuJoCo 3.3.0):
#   python3 -m venv .venv-mw && . .venv-mw/bin/activate && pip install -e '.[metaworld]'
# An interrupted run is resumed by running the script again; a finished one is skipped.
set -euo pipefail
source "$(dirname "$0")/run_or_resume.sh"
ROOT=${1:-$HOME/mql-runs/metaworld}
TOTAL=${TOTAL:-200000}
TASKS=${TASKS:-reach push}
ALGOS=${ALGOS:-mql pearl}
SEEDS=${SEEDS:-0}
EVAL_TASKS=${EVAL_TASKS:-10}
EVAL_EVERY=${EVAL_EVERY:-$((TOTAL / 4))}
read -r -a TRAIN_ARGS <<< "${TRAIN_ARGS:-}"
for task in $TASKS; do
  for algo in $ALGOS; do
    for seed in $SEEDS; do
      env="metaworld-ml1-$task"
      dir="$ROOT/runs/${env}__${algo}__seed${seed}"
      run_or_resume "$dir" "$TOTAL" --env "$env" --algo "$algo" --seed "$seed" \
        --eval-protocol metaworld --eval-episodes 3 --eval-tasks "$EVAL_TASKS" --eval-train-tasks 0 \
        --final-eval-tasks "$EVAL_TASKS" --eval-every "$EVAL_EVERY" --checkpoint-every "$((TOTAL / 4))" \
        "${TRAIN_ARGS[@]}"
      if [ "$algo" = mql ]; then  # the same meta-training scored without adaptation
        python -c "
import sys
from pathlib import Path
from mql.reeval import reevaluate
reevaluate(Path(sys.argv[1]), 'td3-context', Path(sys.argv[2]), {}, final=True,
           log=lambda m: print(m, flush=True))
" "$dir" "$ROOT/runs/${env}__td3-context__seed${seed}"
      fi
    done
  done
done
python benchmarks/collect_eval_data.py "$ROOT/runs" docs/data/metaworld
mql report docs/data/metaworld --baseline td3-context > docs/data/metaworld/report.md
mql plot docs/data/metaworld --out docs/figures/metaworld_ml1.png
