#!/bin/bash
# Configures and builds lockstep (Release-ish, Ninja, ccache) into build/.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Fresh clones in other folders still hit the compiler cache.
export CCACHE_BASEDIR="$PWD"
# -g1: line tables and functions, enough for backtraces and profilers, at
# about three quarters of full debug info's compile time (a cold build of
# this tree is most of CI's build stage).
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" > /dev/null
ninja -C build
