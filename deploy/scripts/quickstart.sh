#!/bin/bash
# The main job: installs, builds, creates the demo fleet with real Alembic
# (SQLite state and SQLite databases in ./demo) and runs lockstepd on it in
# the foreground. In another terminal: build/client/lockstep status
# LOCKSTEP_DEMO_DIR puts the demo elsewhere (default ./demo); see
# demo-fleet.sh for its ports. The tests use both, so they never touch a
# running demo.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/scripts/install-deps.sh
bash deploy/scripts/build.sh
DEMO="${LOCKSTEP_DEMO_DIR:-demo}"
bash deploy/scripts/demo-fleet.sh "$DEMO"
echo
echo "lockstepd is starting on the demo fleet. In another terminal:"
echo "  build/client/lockstep status          # where every database stands"
echo "  build/client/lockstep db prod/tenant-c"
echo "  curl -s ${LOCKSTEP_DEMO_METRICS_LISTEN:-127.0.0.1:9187}/metrics | grep ^lockstep_"
echo "  build/client/lockstep plan --to heads  # then: rollout, approve (README: Walkthrough)"
echo "Stop with Ctrl-C."
echo
exec build/daemon/lockstepd --config "$DEMO/lockstep.yaml"
