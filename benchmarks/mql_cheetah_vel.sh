#!/usr/bin/env bash
# MQL (paper preset) on cheetah-vel, seed 0, under the paired protocol: the periodic evaluations
# on the same 5 test tasks as RL2's and ProMP's cheetah-vel runs (docs/data/rl2, docs/data/maml),
# every 20k steps, for the cheetah-vel panel of docs/results.md ("cheetah-vel across
# algorithms"); then its evaluation data into docs/data/mql_vel/.
#
#   bash benchmarks/mql_cheetah_vel.sh [RUN_ROOT]      (default: ~/mql-runs/vel)
#   TOTAL=100000 bash benchmarks/mql_cheetah_vel.sh    (default 200000)
#
# The first 60k steps are the random warm-up (600 steps on each of the 100 training tasks).
# An interrupted run is resumed by running the script again.
set -euo pipefail
ROOT=${1:-$HOME/mql-runs/vel}
TOTAL=${TOTAL:-200000}
source "$(dirname "$0")/run_or_resume.sh"
run_or_resume "$ROOT/cheetah-vel__mql__seed0" "$TOTAL" --env cheetah-vel --algo mql --seed 0 \
  --eval-every 20000 --eval-tasks 5 --eval-train-tasks 0
python benchmarks/collect_eval_data.py "$ROOT" docs/data/mql_vel
