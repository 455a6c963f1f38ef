#!/usr/bin/env bash
# The cheetah-vel learning runs recorded in docs/results.md: TD3, TD3-context, MQL and PEARL,
# paper presets (PEARL: the oyster preset), seed 0, the same budget of environment steps.
# MQL's meta-training is exactly TD3-context's (the variants differ only in evaluation), so one
# td3-context run gives both; its checkpoint is evaluated zero-shot (TD3-context) and with MQL's
# adaptation (`mql eval --adapt-as mql`).
# PEARL's warm-up is set to MQL's 500 steps per training task (oyster: 2000, which alone would
# be 200k steps, twice this budget); oyster collects whole trajectories, so this is 600 steps.
# Its checkpoint is evaluated with oyster's metric (two context trajectories, the run's
# setting) and with MQL's new-task budget (one trajectory: `--adapt-episodes 1`).
# Pass TOTAL_STEPS (default 100000). The runs go one after the other: each uses both cores.
# Since the paired protocol (commit eb5710e and later), `mql eval` uses a run's own evaluation
# seeds, so on the final checkpoint it reproduces the run's final_eval.json; the data in
# docs/data/cheetah-vel_* were made by mql 0.1's unpaired protocol (docs/results.md says which
# file came from which command) and are read by `python benchmarks/cheetah_vel_table.py`.
set -euo pipefail
TOTAL_STEPS=${TOTAL_STEPS:-100000}
ROOT=${ROOT:-runs/results}
mql train --env cheetah-vel --algo td3 --seed 0 --total-steps "$((TOTAL_STEPS + 20000))" \
  --eval-every 20000 --eval-tasks 3 --eval-train-tasks 0 \
  --run-dir "$ROOT/cheetah-vel__td3__seed0" --quiet --json
mql train --env cheetah-vel --algo td3-context --seed 0 --total-steps "$TOTAL_STEPS" \
  --eval-every 10000 --eval-tasks 5 --eval-train-tasks 0 \
  --run-dir "$ROOT/cheetah-vel__td3-context__seed0" --quiet
mql train --env cheetah-vel --algo pearl --seed 0 --total-steps "$TOTAL_STEPS" \
  --num-initial-steps 500 --eval-every 10000 --eval-tasks 5 --eval-episodes 2 \
  --eval-train-tasks 0 --run-dir "$ROOT/cheetah-vel__pearl__seed0" --quiet
mql eval "$ROOT/cheetah-vel__td3__seed0" --json > "$ROOT/final_td3.json"
mql eval "$ROOT/cheetah-vel__td3-context__seed0" --json > "$ROOT/final_td3-context.json"
mql eval "$ROOT/cheetah-vel__td3-context__seed0" --adapt-as mql --num-tasks 10 --json \
  > "$ROOT/final_mql.json"
mql eval "$ROOT/cheetah-vel__pearl__seed0" --json > "$ROOT/final_pearl.json"
mql eval "$ROOT/cheetah-vel__pearl__seed0" --adapt-episodes 0 1 2 --json \
  > "$ROOT/final_pearl_curve.json"
mql plot "$ROOT/cheetah-vel__td3__seed0" "$ROOT/cheetah-vel__td3-context__seed0" \
  "$ROOT/cheetah-vel__pearl__seed0" --out docs/figures/cheetah_vel.png
