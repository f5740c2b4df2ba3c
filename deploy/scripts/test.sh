#!/bin/bash
# Builds and runs every test: unit, integration (real PostgreSQL and SQLite,
# real Alembic), conformance against Alembic, then the sanitizer build (the
# migrations, config, client and every daemon unit test under ASan+UBSan),
# the daemon's threaded core under ThreadSanitizer, and the fuzzers run for
# a bounded time.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

deploy/scripts/build.sh
(cd build && ctest --output-on-failure --timeout 2400 -j 2)

# The Debian package, as a user gets it: built with CPack, installed with
# dpkg (this runs as root on a throwaway machine), its programs run from
# /usr/bin (the online helper found beside `lockstep`), its example
# inventory checked, then removed again.
echo "== the Debian package"
rm -f build/lockstep_*.deb
(cd build && cpack -G DEB > /dev/null)
deb=$(ls build/lockstep_*_amd64.deb)
dpkg -i "$deb" > /dev/null
trap 'dpkg -r lockstep > /dev/null 2>&1 || true' EXIT
/usr/bin/lockstep --version
/usr/bin/lockstepd --version
/usr/bin/lockstepd --check-config /usr/share/lockstep/examples/fleet.yaml
/usr/bin/lockstep --scripts /usr/share/lockstep/example-project heads
grep -q "^ExecStart=/usr/bin/lockstepd " /usr/lib/systemd/system/lockstepd.service
if offline=$(/usr/bin/lockstep --server 127.0.0.1:1 status 2>&1); then exit 1; fi
grep -q "cannot reach lockstepd" <<< "$offline"  # lockstep-online ran
dpkg -r lockstep > /dev/null
test ! -e /usr/bin/lockstepd
trap - EXIT
echo "$(basename "$deb") installed, ran and was removed"

# ASan + UBSan build of every unit test, and the libFuzzer targets.
# Line tables only: file:line in every report, at a fraction of full debug
# info's compile time (these builds are a third of CI's time).
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O0 -gline-tables-only" -DLOCKSTEP_FUZZ=ON -DLOCKSTEP_SANITIZE=ON \
  > /dev/null
ninja -C build-fuzz lockstep_migrations_test lockstep_config_test lockstep_client_test \
  lockstep_core_test lockstep_drivers_test lockstep_rpc_test revision_file_fuzzer ini_fuzzer \
  graph_fuzzer
# The daemon's tests run against real SQLite, PostgreSQL, MariaDB and Alembic.
export LOCKSTEP_SOURCE_DIR="$PWD"
# Leaks inside Debian's libraries, not lockstep's (each one explained there).
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp print_suppressions=0"
for t in migrations/lockstep_migrations_test config/lockstep_config_test \
         client/lockstep_client_test daemon/lockstep_core_test daemon/lockstep_drivers_test \
         daemon/lockstep_rpc_test; do
  echo "== $(basename "$t") under ASan+UBSan"
  build-fuzz/$t --gtest_brief=1
done

# ThreadSanitizer over the daemon's threaded core: reconciler, rollout
# engine, state store, process runner, startup gate (std::mutex and
# std::thread throughout, which TSan sees; gRPC's and absl's Debian builds
# are not instrumented, so the rpc tests stay under ASan only).
cmake -S . -B build-tsan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DLOCKSTEP_TSAN=ON > /dev/null
ninja -C build-tsan lockstep_core_test
echo "== lockstep_core_test under ThreadSanitizer"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/daemon/lockstep_core_test \
  --gtest_brief=1

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
