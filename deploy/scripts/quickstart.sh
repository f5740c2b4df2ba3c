#!/bin/bash
# The main job: installs, builds, creates the demo fleet with real Alembic
# (SQLite state and SQLite databases in ./demo) and runs lockstepd on it in
# the foreground. In another terminal: build/client/lockstep status
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/scripts/install-deps.sh
bash deploy/scripts/build.sh
bash deploy/scripts/demo-fleet.sh demo
echo
echo "lockstepd is starting on the demo fleet. In another terminal:"
echo "  build/client/lockstep status          # where every database stands"
echo "  build/client/lockstep db prod/tenant-c"
echo "  curl -s 127.0.0.1:9187/metrics | grep ^lockstep_"
echo "  build/client/lockstep plan --to heads  # then: rollout, approve (README: Rollouts)"
echo "Stop with Ctrl-C."
echo
exec build/daemon/lockstepd --config demo/lockstep.yaml
