#!/bin/bash
# Configures and builds lockstep (Release-ish, Ninja, ccache) into build/.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Fresh clones in other folders still hit the compiler cache.
export CCACHE_BASEDIR="$PWD"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
ninja -C build
