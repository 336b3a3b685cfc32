#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time: tests/fuzz/run.sh [SECONDS]
# (default 20 per target). A target is fuzz_<name> for each directory
# tests/fuzz/corpus/<name>; its seeds (and the regress-* inputs that once
# crashed it) run first, then libFuzzer mutates for SECONDS. New inputs go
# to a scratch corpus (FUZZ_CORPUS_DIR/<name> when set, so a long run can
# keep what it found; otherwise a temporary directory), never into the
# seeds. Crash inputs land in FUZZ_ARTIFACTS (default build-fuzz/artifacts).
# Prints one line per target (executions, coverage, corpus size) and a
# summary; exits non-zero if a target is missing or crashed.
set -uo pipefail
cd "$(dirname "$0")/../.."

SECONDS_EACH=${1:-20}
BIN=${FUZZ_BIN_DIR:-build-fuzz/bin}
ART=${FUZZ_ARTIFACTS:-build-fuzz/artifacts}
mkdir -p "$ART"
# The targets carry their own sanitizers; leaks count as crashes.
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

passed=0
failed=0
total_runs=0
start=$(date +%s)
for dir in tests/fuzz/corpus/*/; do
    name=$(basename "$dir")
    bin=$BIN/fuzz_$name
    if [ ! -x "$bin" ]; then
        echo "fuzz_$name: MISSING ($bin not built; make build-fuzz)"
        failed=$((failed + 1))
        continue
    fi
    if [ -n "${FUZZ_CORPUS_DIR:-}" ]; then
        work=$FUZZ_CORPUS_DIR/$name
        mkdir -p "$work"
        tmp=""
    else
        tmp=$(mktemp -d)
        work=$tmp
    fi
    log=$(mktemp)
    "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$ART/$name-" "$work" "$dir" >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
    total_runs=$((total_runs + ${runs:-0}))
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "fuzz_$name: ok runs=${runs:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?}"
    else
        failed=$((failed + 1))
        echo "fuzz_$name: FAILED (exit $rc) runs=${runs:-?}; input in $ART/$name-*"
        grep -E 'ERROR|SUMMARY|#[0-9]+ 0x.* in ' "$log" | head -n 20
    fi
    rm -f "$log"
    [ -n "$tmp" ] && rm -rf "$tmp"
done
echo "fuzz: $passed passed, $failed failed, $total_runs runs, ${SECONDS_EACH} s each," \
    "$(($(date +%s) - start)) s in all"
[ "$failed" -eq 0 ]
