#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time: tests/fuzz/run.sh [SECONDS]
# (default 20 per target). A target is fuzz_<name> for each directory
# tests/fuzz/corpus/<name>; its seeds (and the regress-* inputs that once
# crashed it) run first, then libFuzzer mutates for SECONDS. New inputs go
# to a scratch corpus (FUZZ_CORPUS_DIR/<name> when set, so a long run can
# keep what it found; otherwise a temporary directory), never into the
# seeds. Crash inputs land in FUZZ_ARTIFACTS (default build-fuzz/artifacts).
# Prints one line per target (executions, coverage, corpus size) and a
# summary; exits non-zero if a target is missing or crashed. Targets run
# FUZZ_JOBS at a time (default one per core).
set -uo pipefail
cd "$(dirname "$0")/../.."

SECONDS_EACH=${1:-20}
BIN=${FUZZ_BIN_DIR:-build-fuzz/bin}
ART=${FUZZ_ARTIFACTS:-build-fuzz/artifacts}
mkdir -p "$ART"
# The targets carry their own sanitizers; leaks count as crashes.
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Targets run JOBS at a time (default: one per core), each for SECONDS.
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
results=$(mktemp -d)
start=$(date +%s)

# fuzz_one NAME DIR: runs one target, writes its report line(s) to
# $results/NAME.line and its execution count to $results/NAME.runs.
fuzz_one() {
    local name=$1 dir=$2
    local bin=$BIN/fuzz_$name out=$results/$name.line
    if [ ! -x "$bin" ]; then
        echo "fuzz_$name: MISSING ($bin not built; make build-fuzz)" >"$out"
        echo fail >"$results/$name.rc"
        return
    fi
    local work tmp=""
    if [ -n "${FUZZ_CORPUS_DIR:-}" ]; then
        work=$FUZZ_CORPUS_DIR/$name
        mkdir -p "$work"
    else
        tmp=$(mktemp -d)
        work=$tmp
    fi
    local log=$results/$name.log rc
    "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$ART/$name-" "$work" "$dir" >"$log" 2>&1
    rc=$?
    local runs cov ft corp
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
    echo "${runs:-0}" >"$results/$name.runs"
    if [ "$rc" -eq 0 ]; then
        echo ok >"$results/$name.rc"
        echo "fuzz_$name: ok runs=${runs:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?}" >"$out"
    else
        echo fail >"$results/$name.rc"
        {
            echo "fuzz_$name: FAILED (exit $rc) runs=${runs:-?}; input in $ART/$name-*"
            grep -E 'ERROR|SUMMARY|#[0-9]+ 0x.* in ' "$log" | head -n 20
        } >"$out"
    fi
    [ -n "$tmp" ] && rm -rf "$tmp"
    return 0
}

names=()
for dir in tests/fuzz/corpus/*/; do
    name=$(basename "$dir")
    names+=("$name")
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
        wait -n || true
    done
    fuzz_one "$name" "$dir" &
done
wait

passed=0
failed=0
total_runs=0
for name in "${names[@]}"; do
    cat "$results/$name.line"
    if [ "$(cat "$results/$name.rc" 2>/dev/null)" = ok ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    total_runs=$((total_runs + $(cat "$results/$name.runs" 2>/dev/null || echo 0)))
done
rm -rf "$results"
echo "fuzz: $passed passed, $failed failed, $total_runs runs, ${SECONDS_EACH} s each," \
    "$JOBS at a time, $(($(date +%s) - start)) s in all"
[ "$failed" -eq 0 ]
