#!/usr/bin/env bash
# Every test, twice: unit (ctest) and system (pytest) tests against the
# normal build, then against the ASan+UBSan build, after the clang-format
# check (tests/check-format.sh); then a bounded run of every libFuzzer
# target (tests/fuzz/run.sh, FUZZ_SECONDS each, default 20; build-fuzz/ is
# built by `make build-fuzz`). Run from anywhere; exits non-zero if any
# runner fails (pytest's "no tests collected" counts too).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/usr/bin/python3}
# A pytest -m expression for the ASan pass, e.g. "not slow" on a slow machine.
ASAN_PYTEST_MARK=${ASAN_PYTEST_MARK:-}
summary=()
failed=0

# Runs one runner, keeps its last summary-looking line for the final report.
run() {
    local name=$1
    shift
    local log rc
    log=$(mktemp)
    echo "==== $name: $*"
    set +e
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    local line
    line=$(grep -E '(tests passed|tests failed|[0-9]+ (passed|failed|error|skipped|deselected)|no tests ran)' "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then
        line=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)
    fi
    rm -f "$log"
    if [ "$rc" -ne 0 ]; then
        failed=1
        summary+=("FAIL $name (exit $rc): ${line:-no summary}")
    else
        summary+=("ok   $name: ${line:-no summary}")
    fi
}

# pytest_run BIN_DIR [pytest args]. Its exit 5 (no tests collected) is
# non-zero, so run() counts it as a failure like any other.
# shellcheck disable=SC2317  # invoked indirectly through run()
pytest_run() {
    local bindir=$1
    shift
    SHOAL_BIN_DIR=$bindir "$PYTHON" -m pytest -q -p no:cacheprovider -rfEs "$@" tests/system
}

start=$(date +%s)

run "format" ./tests/check-format.sh
run "unit (build)" ctest --test-dir build --output-on-failure
run "system (build)" pytest_run build/bin

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run "unit (build-asan)" ctest --test-dir build-asan --output-on-failure
if [ -n "$ASAN_PYTEST_MARK" ]; then
    run "system (build-asan)" pytest_run build-asan/bin -m "$ASAN_PYTEST_MARK"
else
    run "system (build-asan)" pytest_run build-asan/bin
fi

run "fuzz (build-fuzz)" ./tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"

echo
echo "==== summary ($(($(date +%s) - start)) s)"
for s in "${summary[@]}"; do
    echo "$s"
done
exit "$failed"
