#!/usr/bin/env bash
# Every number of docs/results.md's "Does adaptation help? The Fig. 4 ablations", end to end:
# meta-training (benchmarks/fig4_train.sh), re-evaluation of the kept checkpoints as each variant
# (benchmarks/fig4_eval.py), the evaluation data into docs/data/, the reports and the figures.
#
#   bash benchmarks/fig4.sh            all of it (about 10 hours of one core for the 7 runs)
#   STAGE=report bash benchmarks/fig4.sh   only the tables and figures, from the committed
#                                          docs/data/fig4 and docs/data/fig4_released
#
# Run roots (outside the work tree): ~/mql-runs/fig4 (paper preset, 3 seeds x cheetah-dir,
# ant-dir) and ~/mql-runs/fig4-released (`--preset released`, cheetah-dir seed 0). Interrupted
# runs and evaluations continue where they stopped when the script is run again.
set -euo pipefail
RUNS=${RUNS:-$HOME/mql-runs}
STAGE=${STAGE:-all}
if [ "$STAGE" = all ]; then
  EVAL_EVERY=100000 EVAL_TRAIN_TASKS=0 ROOT="$RUNS/fig4" \
    bash benchmarks/fig4_train.sh cheetah-dir:0 ant-dir:0 cheetah-dir:1 ant-dir:1 cheetah-dir:2 ant-dir:2
  PRESET=released EVAL_EVERY=100000 EVAL_TRAIN_TASKS=0 ROOT="$RUNS/fig4-released" \
    bash benchmarks/fig4_train.sh cheetah-dir:0
  python benchmarks/fig4_eval.py "$RUNS/fig4" "$RUNS/fig4-eval" --every 100000
  python benchmarks/fig4_eval.py "$RUNS/fig4-released" "$RUNS/fig4-released-eval" --every 100000 \
    --variants td3-context mql mql-no-eq19
  python benchmarks/collect_eval_data.py "$RUNS/fig4-eval" docs/data/fig4
  python benchmarks/collect_eval_data.py "$RUNS/fig4-released-eval" docs/data/fig4_released
fi
for name in fig4 fig4_released; do
  mql report "docs/data/$name" --baseline td3-context > "docs/data/$name/report.md"
  mql plot "docs/data/$name" --out "docs/figures/$name.png"  # also *_lambda_beta.png, *_adaptation.png
done
