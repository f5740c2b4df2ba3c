#!/bin/bash
# The main job: installs, builds, and shows lockstep on the example project.
# (The daemon on a demo fleet joins this script when lockstepd lands.)
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/scripts/install-deps.sh
bash deploy/scripts/build.sh
INI=migrations/example/alembic.ini
run() { echo; echo "\$ lockstep $*"; build/client/lockstep "$@"; }
run -c "$INI" heads
run -c "$INI" history
run -c "$INI" branches
run -c "$INI" show orders@head
run -c "$INI" path heads --from 7c4e2d8a9b22
run -c "$INI" lint
