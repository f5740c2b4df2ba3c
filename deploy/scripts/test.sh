#!/bin/bash
# Builds and runs every test: unit, integration (real PostgreSQL and SQLite,
# real Alembic), conformance against Alembic, then the sanitizer build (the
# migrations and daemon core tests under ASan+UBSan) with the fuzzers run
# for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

deploy/scripts/build.sh
(cd build && ctest --output-on-failure --timeout 2400 -j 2)

# ASan + UBSan build of the migrations tests, and the libFuzzer targets.
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
  -DLOCKSTEP_FUZZ=ON -DLOCKSTEP_SANITIZE=ON > /dev/null
ninja -C build-fuzz lockstep_migrations_test lockstep_core_test revision_file_fuzzer ini_fuzzer \
  graph_fuzzer
echo "== migrations tests under ASan+UBSan"
build-fuzz/migrations/lockstep_migrations_test --gtest_brief=1
# The daemon's core (reconciler, rollout engine, state store, processes:
# its threads) against real SQLite, PostgreSQL and Alembic.
echo "== daemon core tests under ASan+UBSan"
LOCKSTEP_SOURCE_DIR="$PWD" build-fuzz/daemon/lockstep_core_test --gtest_brief=1

# clang's lock analysis (-Wthread-safety, as errors: CMakeLists.txt) over the
# daemon's libraries that share state between threads; and proof that it is
# on: a file that reads a guarded member without its lock must not compile.
echo "== clang -Wthread-safety on the daemon"
ninja -C build-fuzz lockstep_state lockstep_core lockstep_rollout
if clang++ -std=c++20 -fsyntax-only -I. -Wthread-safety -Werror=thread-safety \
     tests/tsa/unguarded_read.cc 2> /dev/null; then
  echo "the lock analysis did not catch tests/tsa/unguarded_read.cc" >&2
  exit 1
fi
for fuzzer in revision_file ini graph; do
  corpus=$(mktemp -d)
  log=$(mktemp)
  case $fuzzer in  # seeds: the example project's own files
    revision_file) seeds=migrations/example/versions ;;
    ini) seeds="tests/fuzz/corpus/ini migrations/example" ;;
    *) seeds= ;;
  esac
  echo "== fuzzing $fuzzer for ${FUZZ_SECONDS}s"
  if ! build-fuzz/tests/fuzz/${fuzzer}_fuzzer -max_total_time="$FUZZ_SECONDS" \
       -print_final_stats=1 "$corpus" $seeds > "$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzzer $fuzzer found a crash" >&2
    exit 1
  fi
  grep -E "^Done [0-9]+ runs" "$log"  # e.g. "Done 260233 runs in 30 second(s)"
  rm -rf "$corpus" "$log"
done
echo "all test stages passed"
