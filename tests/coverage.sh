#!/usr/bin/env bash
# Line coverage of the agent's pure cores by the unit tests (`make coverage`):
# builds build-cov with gcc's --coverage, runs ctest there from zeroed
# counters, and prints gcov's line coverage of each file below.
#
#   tests/coverage.sh                 every unit test
#   CTEST_ARGS="-R swarm" tests/coverage.sh
#   COVERAGE_MIN=90 tests/coverage.sh fails if a file is below 90%
#
# Run from anywhere. JOBS defaults to 2 (a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build-cov}
JOBS=${JOBS:-2}
CTEST_ARGS=${CTEST_ARGS:-}
COVERAGE_MIN=${COVERAGE_MIN:-}
FILES=(
    agent/swarm/swarm_core.c
    agent/swarm/ban_list.c
    agent/cache/partial.c
)

command -v gcov >/dev/null || {
    echo "coverage: gcov not found (apt-get install gcc)" >&2
    exit 1
}

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DSHOAL_WERROR=ON -DSHOAL_SANITIZE=OFF \
    -DCMAKE_C_FLAGS=--coverage >/dev/null
cmake --build "$BUILD" -j "$JOBS"

# Counters add up across runs: start from zero.
find "$BUILD" -name '*.gcda' -delete
# shellcheck disable=SC2086  # CTEST_ARGS is a list of arguments
ctest --test-dir "$BUILD" --output-on-failure $CTEST_ARGS

echo
echo "==== line coverage ($BUILD)"
low=0
for f in "${FILES[@]}"; do
    gcno=$(find "$BUILD" -path "*.dir/${f#*/}.gcno" -print -quit)
    if [ -z "$gcno" ]; then
        gcno=$(find "$BUILD" -name "$(basename "$f").gcno" -print -quit)
    fi
    if [ -z "$gcno" ]; then
        printf '%-28s not built\n' "$f"
        low=1
        continue
    fi
    if [ ! -f "${gcno%.gcno}.gcda" ]; then
        printf '%-28s   0.00%% (no test runs it)\n' "$f"
        low=1
        continue
    fi
    # gcov prints, per source file: File '<path>' / Lines executed:P% of N.
    line=$(cd "$(dirname "$gcno")" && gcov -n "$(basename "$gcno")" 2>/dev/null |
        awk -v want="$f" '/^File /{ok = index($0, want "\x27") > 0} ok && /^Lines executed/{print; exit}')
    pct=$(sed -E 's/^Lines executed:([0-9.]+)% of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/^Lines executed:([0-9.]+)% of ([0-9]+).*/\2/' <<<"$line")
    printf '%-28s %6s%% of %s lines\n' "$f" "$pct" "$total"
    if [ -n "$COVERAGE_MIN" ] && awk -v p="$pct" -v m="$COVERAGE_MIN" 'BEGIN{exit !(p < m)}'; then
        low=1
    fi
done
if [ -n "$COVERAGE_MIN" ] && [ "$low" -ne 0 ]; then
    echo "coverage: a file is below ${COVERAGE_MIN}% (or not run)" >&2
    exit 1
fi
