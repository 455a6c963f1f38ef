#!/usr/bin/env bash
# The cheetah-vel learning runs recorded in docs/results.md (issue: TD3 vs TD3-context vs MQL).
# MQL's meta-training is exactly TD3-context's (the variants differ only in evaluation), so one
# td3-context run gives both curves' meta-training; its checkpoint is then evaluated zero-shot
# (TD3-context) and with MQL's adaptation (`mql eval --adapt-as mql`).
# Budget: whatever fits; pass TOTAL_STEPS (default 110000). Paper preset throughout.
set -euo pipefail
TOTAL_STEPS=${TOTAL_STEPS:-110000}
ROOT=${ROOT:-runs/results}
mql train --env cheetah-vel --algo td3 --seed 0 --total-steps "$TOTAL_STEPS" --eval-every 20000 \
  --eval-tasks 3 --eval-train-tasks 0 --run-dir "$ROOT/cheetah-vel__td3__seed0" --quiet &
mql train --env cheetah-vel --algo td3-context --seed 0 --total-steps "$TOTAL_STEPS" \
  --eval-every 10000 --eval-tasks 5 --eval-train-tasks 0 \
  --run-dir "$ROOT/cheetah-vel__td3-context__seed0" --quiet &
wait
for algo in td3-context mql; do
  mql eval "$ROOT/cheetah-vel__td3-context__seed0" --adapt-as "$algo" --num-tasks 5 --json \
    > "$ROOT/final_$algo.json"
done
mql plot "$ROOT" --out docs/figures/cheetah_vel.png
