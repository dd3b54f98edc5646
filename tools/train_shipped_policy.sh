#!/usr/bin/env bash
# Re-make models/shipped/td3_policy.pth (what `make demo` drives): the trainer node with the
# embedded simulator over DDS, config/shipped_policy.yaml (seed, budget, settings), then the
# policy-only form of its final checkpoint. Takes ~25 min on 2 idle CPU cores (~50 min under load).
#
# usage: tools/train_shipped_policy.sh [venv]     (make shipped-policy)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$repo/.venv}
run=shipped-seed0
cd "$repo"
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
rm -rf "models/$run"
"$venv/bin/td3-run" train --params-file config/shipped_policy.yaml -p "td3_trainer.run_name:=$run" --log-dir "runs/$run"
"$venv/bin/td3-export" --checkpoint "models/$run" --policy-only models/shipped/td3_policy.pth
