#!/usr/bin/env bash
# ThreadSanitizer run (make test-tsan): every unit test, then the system tests
# that drive the agent's thread-pool jobs (stream writes and hashes, piece
# writes, peer sendfile reads, the tmpfs reservation, blob checks), against a
# build-tsan/ build. Fails on any data race TSan reports, in a test binary or
# in an agent a system test started. Not part of make test (it adds about
# four minutes on two cores); run it after touching anything a pool job
# shares with the event loop. See docs/development.md.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
PYTHON=${PYTHON:-/usr/bin/python3}
SYSTEM_TESTS=${TSAN_SYSTEM_TESTS:-tests/system/test_pull.py tests/system/test_swarm.py
    tests/system/test_disk_full.py tests/system/test_resume.py tests/system/test_range.py
    tests/system/test_concurrency.py}

cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSHOAL_WERROR=ON -DSHOAL_TSAN=ON >/dev/null
cmake --build build-tsan -j "$JOBS"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# Reports go to files (an agent's stderr is a test's log, which nobody reads
# when the test passes); TSan's own exit status still fails a unit test.
export TSAN_OPTIONS="log_path=$logs/tsan second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
rc=0
(cd build-tsan && ctest --output-on-failure -j "$JOBS") || rc=1
# shellcheck disable=SC2086 # a list of paths
SHOAL_BIN_DIR=build-tsan/bin "$PYTHON" -m pytest -q -p no:cacheprovider $SYSTEM_TESTS || rc=1

reports=("$logs"/tsan.*)
if [ -e "${reports[0]}" ]; then
    cat "${reports[@]}"
    echo "tsan: ThreadSanitizer reported in ${#reports[@]} process(es) (above)" >&2
    exit 1
fi
[ "$rc" = 0 ] || { echo "tsan: tests failed (above)" >&2; exit 1; }
echo "tsan: every test passed, no data race reported"
