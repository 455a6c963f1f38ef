#!/usr/bin/env bash
# PEARL (oyster's cheetah-dir settings, `mql.algos.pearl.config`: 2 training tasks, warm-up
# 2000 steps per task, 5 tasks x 1000 steps and 2000 gradient steps per iteration, meta-batch 4)
# on cheetah-dir, seed 0, with the paired protocol on the 2 test tasks every 20k steps, for the
# cheetah-dir panel of docs/results.md ("cheetah-dir across algorithms"); then its evaluation
# data into docs/data/pearl/ and the report.
#
#   bash benchmarks/pearl_cheetah_dir.sh [RUN_ROOT]     (default: ~/mql-runs/pearl)
#   TOTAL=100000 bash benchmarks/pearl_cheetah_dir.sh   (a smaller budget; default 300000)
#
# About 4 minutes an iteration (10k steps) on a 2-core CPU. An interrupted run is resumed by
# running the script again; a larger TOTAL extends a finished one.
set -euo pipefail
ROOT=${1:-$HOME/mql-runs/pearl}
TOTAL=${TOTAL:-300000}
source "$(dirname "$0")/run_or_resume.sh"
run_or_resume "$ROOT/cheetah-dir__pearl__seed0" "$TOTAL" --env cheetah-dir --algo pearl --seed 0 \
  --eval-every 20000 --eval-train-tasks 0 --checkpoint-every 20000
python benchmarks/collect_eval_data.py "$ROOT" docs/data/pearl
mql report docs/data/pearl > docs/data/pearl/report.md
