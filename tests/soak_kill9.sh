#!/bin/bash
# A longer soak of tests/e2e/test_kill9.py: 300 random kill -9 points (or
# $1) across rollouts of SQLite and PostgreSQL tenants; prints the tally
# (kills, how many landed inside Alembic, rollouts, retried steps, the seed).
#   bash tests/soak_kill9.sh [POINTS]     (after deploy/scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export LOCKSTEP_BUILD="${LOCKSTEP_BUILD:-$PWD/build}"
LOCKSTEP_KILL_POINTS="${1:-300}" /usr/bin/python3 -m unittest -v tests/e2e/test_kill9.py
