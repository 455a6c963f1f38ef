#!/usr/bin/env bash
# MAML-TRPO and ProMP (ProMP's settings: MLP (64, 64), meta-batch 40 tasks x 20 rollouts,
# horizon 100, one inner step of size 0.1, linear baseline) on cheetah-dir, seed 0, at a budget
# of ITERATIONS iterations (ProMP's published runs: 1001 iterations = 160M environment steps,
# pre- and post-update; default here 1001), then cheetah-vel if CHEETAH_VEL=1 (horizon 200:
# 320M steps at 1001 iterations); then the evaluation data and the training returns (pre- and
# post-update, per iteration and per 100 iterations) into docs/data/maml/ and the report
# (docs/results.md, "MAML-TRPO and ProMP").
#
#   bash benchmarks/maml_cheetah.sh [RUN_ROOT]        (default: ~/mql-runs/maml)
#   ITERATIONS=300 bash benchmarks/maml_cheetah.sh    (a shorter budget)
#   DIR_SEEDS="0 1" VEL_SEEDS=0 bash benchmarks/maml_cheetah.sh   (seeds; default 0 on both)
#
# Every run is resumable: an interrupted run continues exactly by running the script again
# (`mql train --resume`). Keep RUN_ROOT outside the work tree. The sampler uses every core.
set -euo pipefail
ROOT=${1:-$HOME/mql-runs/maml}
ITERATIONS=${ITERATIONS:-1001}
source "$(dirname "$0")/run_or_resume.sh"
run() {  # env algo steps_per_iteration seed
  run_or_resume "$ROOT/$1__$2__seed$4" $((ITERATIONS * $3)) --env "$1" --algo "$2" --seed "$4"
}
# steps per iteration: (inner steps + 1) x 40 tasks x 20 rollouts x horizon
for seed in ${DIR_SEEDS:-0}; do
  for algo in maml-trpo promp; do
    run cheetah-dir "$algo" $((2 * 40 * 20 * 100)) "$seed"
  done
done
if [ "${CHEETAH_VEL:-0}" = 1 ]; then
  for seed in ${VEL_SEEDS:-0}; do
    for algo in maml-trpo promp; do
      run cheetah-vel "$algo" $((2 * 40 * 20 * 200)) "$seed"
    done
  done
fi
python benchmarks/collect_eval_data.py "$ROOT" docs/data/maml
python benchmarks/training_returns.py "$ROOT" docs/data/maml > docs/data/maml/training_returns.md
mql report docs/data/maml > docs/data/maml/report.md
mql plot docs/data/maml --out docs/figures/maml_cheetah.png
