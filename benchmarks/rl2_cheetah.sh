#!/usr/bin/env bash
# RL2 (PPO, ProMP's settings: GRU 64, meta-batch 100 trials of 2 episodes, horizon 200, linear
# baseline) on cheetah-dir at ProMP's budget (500 iterations x 100 trials x 2 episodes = 20M
# environment steps) and on cheetah-vel at 10M, seed 0 (docs/results.md, "RL2"); then the
# evaluation data into docs/data/rl2/ and the report.
#
#   bash benchmarks/rl2_cheetah.sh [RUN_ROOT]        (default: ~/mql-runs/rl2)
#   DIR_SEEDS="0 1" VEL_SEEDS="0 1" bash benchmarks/rl2_cheetah.sh   (more seeds; default 0)
#   SAMPLER_POLICY=numpy DATA=docs/data/rl2_numpy FIGURE= bash benchmarks/rl2_cheetah.sh \
#     ~/mql-runs/rl2-numpy   (RL2's default sampling step since 2026-12-06, its data apart, no
#     figure; the runs in docs/data/rl2 sampled with the compiled step, jax, which is this
#     script's default so that it reproduces them)
#
# About 20 minutes for cheetah-dir and 12 for cheetah-vel on a 2-core CPU (the sampler uses
# both cores). An interrupted run is resumed by running the script again.
set -euo pipefail
ROOT=${1:-$HOME/mql-runs/rl2}
source "$(dirname "$0")/run_or_resume.sh"
run() {  # env total_steps seed
  run_or_resume "$ROOT/$1__rl2__seed$3" "$2" --env "$1" --algo rl2 --seed "$3" \
    --sampler-policy "${SAMPLER_POLICY:-jax}"
}
for seed in ${DIR_SEEDS:-0}; do
  run cheetah-dir 20000000 "$seed"
done
for seed in ${VEL_SEEDS:-0}; do
  run cheetah-vel 10000000 "$seed"
done
DATA=${DATA:-docs/data/rl2}
FIGURE=${FIGURE-docs/figures/rl2_cheetah.png}
python benchmarks/collect_eval_data.py "$ROOT" "$DATA"
mql report "$DATA" > "$DATA/report.md"
if [ -n "$FIGURE" ]; then mql plot "$DATA" --out "$FIGURE"; fi
