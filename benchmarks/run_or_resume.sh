# Sourced by the benchmark scripts (`source "$(dirname "$0")/run_or_resume.sh"`):
#
#   run_or_resume DIR TOTAL [mql train arguments ...]
#
# brings the run in DIR to TOTAL environment steps: nothing to do when its final evaluation is at
# TOTAL or beyond; `mql train --resume DIR --total-steps TOTAL` when DIR holds a checkpoint (an
# interrupted run continues exactly; a finished one with a smaller budget is extended); otherwise
# a new run, `mql train ARGUMENTS --total-steps TOTAL --run-dir DIR --overwrite`. Quiet.
run_or_resume() {
  local dir=$1 total=$2
  shift 2
  if [ -f "$dir/final_eval.json" ] && python -c 'import json, sys
sys.exit(json.load(open(sys.argv[1]))["env_steps"] < int(sys.argv[2]))' "$dir/final_eval.json" "$total"; then
    echo "$dir: done at $total steps"
  elif [ -f "$dir/checkpoints/latest.ckpt" ]; then
    mql train --resume "$dir" --total-steps "$total" --quiet
  else
    mql train "$@" --total-steps "$total" --run-dir "$dir" --overwrite --quiet
  fi
}
