#!/usr/bin/env bash
# Meta-training runs of the Fig. 4 ablations (docs/results.md, "Does adaptation help?"):
# mql, paper preset, on cheetah-dir and ant-dir, seeds 0-2, 300k environment steps, a kept
# checkpoint every 50k steps. Every variant (td3-context, mql, mql-no-eq19, mql-fixed-lambda)
# meta-trains identically, so one run per (env, seed) serves them all: the variants are
# evaluated afterwards from the kept checkpoints (benchmarks/fig4_eval.py).
#
#   bash benchmarks/fig4_train.sh [ENV:SEED ...]
#   ROOT=~/mql-runs/fig4 TOTAL=300000 EVAL_EVERY=50000 EVAL_TRAIN_TASKS=2 PRESET=paper
#   (environment variables, these are the defaults; PRESET=released with ROOT=~/mql-runs/fig4-released
#   trains with the authors' run_script.py values and rules; the Fig. 4 numbers come from benchmarks/fig4_eval.py, so
#   the runs' own evaluations can be made rarer to save time: seed 1 ran with EVAL_EVERY=100000
#   EVAL_TRAIN_TASKS=0)
#
# With no arguments, all six runs one after another, seed-major. On a 2-core machine two
# invocations with disjoint ENV:SEED lists (each pinned with `taskset -c 0` / `-c 1`) run
# side by side. An interrupted run is continued by running the script again: a finished run
# is skipped, a started one resumed from its latest checkpoint.
set -euo pipefail
source "$(dirname "$0")/run_or_resume.sh"
ROOT=${ROOT:-$HOME/mql-runs/fig4}
TOTAL=${TOTAL:-300000}
EVAL_EVERY=${EVAL_EVERY:-50000}
EVAL_TRAIN_TASKS=${EVAL_TRAIN_TASKS:-2}
PRESET=${PRESET:-paper}
if [ "$#" -eq 0 ]; then
  set -- cheetah-dir:0 ant-dir:0 cheetah-dir:1 ant-dir:1 cheetah-dir:2 ant-dir:2
fi
for pair in "$@"; do
  env=${pair%%:*}
  seed=${pair##*:}
  dir="$ROOT/${env}__mql__seed${seed}"
  run_or_resume "$dir" "$TOTAL" --env "$env" --algo mql --preset "$PRESET" --seed "$seed" \
    --eval-every "$EVAL_EVERY" --eval-train-tasks "$EVAL_TRAIN_TASKS" --checkpoint-every 50000
  echo "$dir: trained to $TOTAL steps"
done
