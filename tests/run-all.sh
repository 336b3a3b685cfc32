#!/usr/bin/env bash
# Every test: the clang-format check (tests/check-format.sh); unit (ctest)
# and system (pytest) tests against the normal build, then against the
# ASan+UBSan build; a bounded run of every libFuzzer target
# (tests/fuzz/run.sh, FUZZ_SECONDS each, default 20; build-fuzz/ is built by
# `make build-fuzz`); and the container image build from source (pytest
# marker "image"). The system passes leave about half of the machine's CPU
# idle (they wait on timers and sockets), so the image build (network and
# disk bound) runs beside the normal pass and the fuzzers (one core) beside
# the ASan pass; each side's output is printed when both are done. The ASan
# pass skips the tests marked "slow" (long multi-agent runs whose code paths
# smaller tests take too); ASAN_PYTEST_MARK="" runs them all. Run from
# anywhere; exits non-zero if any runner fails (pytest's "no tests
# collected" counts too).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/usr/bin/python3}
# The pytest -m expression for the ASan pass; empty runs every test.
ASAN_PYTEST_MARK=${ASAN_PYTEST_MARK-not slow}
summary=()
failed=0

# record NAME RC LOG: keeps the runner's last summary-looking line.
record() {
    local name=$1 rc=$2 log=$3 line
    line=$(grep -E '(tests passed|tests failed|[0-9]+ (passed|failed|error|skipped|deselected)|no tests ran)' "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then
        line=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)
    fi
    if [ "$rc" -ne 0 ]; then
        failed=1
        summary+=("FAIL $name (exit $rc): ${line:-no summary}")
    else
        summary+=("ok   $name: ${line:-no summary}")
    fi
}

# Runs one runner in the foreground, its output on ours.
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
    record "$name" "$rc" "$log"
    rm -f "$log"
}

# run_beside NAME1 CMD1... -- NAME2 CMD2...: two runners at once, each into
# its own log, printed one after the other when both are done.
run_beside() {
    local name1=$1
    shift
    local cmd1=()
    while [ "$1" != "--" ]; do
        cmd1+=("$1")
        shift
    done
    shift
    local name2=$1
    shift
    local log1 log2 pid1 rc1 rc2
    log1=$(mktemp)
    log2=$(mktemp)
    echo "==== $name1: ${cmd1[*]}"
    echo "==== $name2: $* (beside it; output below)"
    set +e
    "${cmd1[@]}" >"$log1" 2>&1 &
    pid1=$!
    "$@" >"$log2" 2>&1
    rc2=$?
    wait "$pid1"
    rc1=$?
    set -e
    echo "==== $name1"
    cat "$log1"
    echo "==== $name2"
    cat "$log2"
    record "$name1" "$rc1" "$log1"
    record "$name2" "$rc2" "$log2"
    rm -f "$log1" "$log2"
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
# The image compiles its own binaries; build/bin is only used for its smoke
# checks. Its own basetemp (wiped by pytest at start) keeps the two pytest
# runs' directories apart.
run_beside "system image (build)" pytest_run build/bin -m image --basetemp "$PWD/build/pytest-image" -- \
    "system (build)" pytest_run build/bin -m "not image"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run "unit (build-asan)" ctest --test-dir build-asan --output-on-failure
asan_mark="not image"
if [ -n "$ASAN_PYTEST_MARK" ]; then
    asan_mark="not image and ($ASAN_PYTEST_MARK)"
fi
run_beside "fuzz (build-fuzz)" env FUZZ_JOBS=1 ./tests/fuzz/run.sh "${FUZZ_SECONDS:-20}" -- \
    "system (build-asan)" pytest_run build-asan/bin -m "$asan_mark"

echo
echo "==== summary ($(($(date +%s) - start)) s)"
for s in "${summary[@]}"; do
    echo "$s"
done
exit "$failed"
