#!/usr/bin/env bash
# Point robot under the paired protocol (docs/results.md, "Point robot"): td3, td3-context, mql,
# mql-no-eq19 and pearl, 5 seeds each, at the README's 20k-step budget, every evaluation also
# scoring the return after K = 0, 1, 2 new-task episodes; then the report, the curves and the
# return-against-K figure, and the evaluation data copied into docs/data/point_robot/.
#
#   bash benchmarks/point_robot_protocol.sh [RUN_ROOT]      (default: ~/mql-runs/point-robot)
#
# About an hour on an idle 2-core CPU (two seeds at a time).
set -euo pipefail
ROOT=${1:-$HOME/mql-runs/point-robot}
for algo in td3 td3-context mql mql-no-eq19 pearl; do
  mql train --env point-robot --algo "$algo" --total-steps 20000 --eval-adapt-episodes 0 1 2 \
    --seeds 0 1 2 3 4 --jobs 2 --run-dir "$ROOT"
done
python benchmarks/collect_eval_data.py "$ROOT" docs/data/point_robot
mql report docs/data/point_robot --baseline td3-context > docs/data/point_robot/report.md
mql plot docs/data/point_robot --out docs/figures/point_robot.png
