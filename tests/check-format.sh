#!/usr/bin/env bash
# Fails when any git-tracked .c/.h file differs from what clang-format makes
# of it with the repo's .clang-format, and lists those files. Fix with
# `make format` (clang-format -i on the same files). Run first by
# tests/run-all.sh, so `make test` fails on format drift.
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if ! command -v "$CLANG_FORMAT" >/dev/null; then
    echo "check-format: $CLANG_FORMAT is not installed (make deps installs clang-format)" >&2
    exit 2
fi

files=()
while IFS= read -r -d '' f; do
    # A tracked file deleted in the work tree is not there to check.
    if [ -f "$f" ]; then
        files+=("$f")
    fi
done < <(git ls-files -z -- '*.c' '*.h')
if [ ${#files[@]} -eq 0 ]; then
    echo "check-format: no tracked .c/.h files found" >&2
    exit 2
fi

# One clang-format run over all files; its warnings name each file that
# differs ("FILE:LINE:COL: error: code should be clang-formatted").
set +e
out=$("$CLANG_FORMAT" --dry-run -Werror "${files[@]}" 2>&1)
rc=$?
set -e
mapfile -t bad < <(printf '%s\n' "$out" |
    sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' | sort -u)
if [ "$rc" -ne 0 ] && [ ${#bad[@]} -eq 0 ]; then
    printf '%s\n' "$out" >&2
    echo "check-format: $CLANG_FORMAT failed (exit $rc)" >&2
    exit 1
fi

if [ ${#bad[@]} -ne 0 ]; then
    echo "check-format: these files differ from clang-format:"
    printf '  %s\n' "${bad[@]}"
    echo "check-format: ${#bad[@]} of ${#files[@]} files differ from clang-format;" \
        "run 'make format' and commit the result"
    exit 1
fi
echo "check-format: ${#files[@]} files formatted"
