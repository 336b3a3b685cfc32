#!/usr/bin/env bash
# Where do the cycles of a pull-mode run go? Runs bench/cluster-bench in pull
# mode (shoal only) under `perf record -a -g` and writes, next to the usual
# report, a breakdown of the CPU per byte delivered (user and kernel, by
# category and by process). See bench/README.md, "profile-pull.sh".
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    cat <<EOF
Usage: bench/profile-pull.sh [cluster-bench options]

Runs: bench/cluster-bench --mode pull --systems shoal --perf [options]
(N=8, 512 MiB model, 400 Mbit/s unless the options say otherwise), with
perf sampling cpu-clock on every CPU at ~1 kHz from just before T0 until
the last client holds the verified workload.

Writes bench/results/cluster-bench-<date>.{md,png,json} and
bench/results/cluster-bench-<date>-perf-<workload>-shoal-pull.md: CPU
seconds per GB delivered by category (hashing, memcpy/copy_user, TCP/IP,
tbf/ifb/veth, page cache/filesystem, libuv/epoll, scheduler, page faults,
syscall entry, other), user and kernel apart, per process group, and the
top symbols of each category. --keep also keeps perf.data (read it again
with bench/clusterbench/perfprof.py report, arguments in the JSON's
"perf" entry).

Examples:
  bench/profile-pull.sh                                  # N=8, 512 MiB, 400 Mbit/s
  bench/profile-pull.sh --hosts 16 --rate 200mbit        # N=16
  bench/profile-pull.sh --workload image --reps 3
  bench/profile-pull.sh --hosts 3 --size 64MiB           # a quick look

Needs root and perf (Debian package linux-perf), plus what cluster-bench
needs (make deps).
EOF
}

case ${1:-} in
-h | --help) usage; exit 0 ;;
esac
command -v perf >/dev/null || {
    echo "profile-pull: perf not found (apt-get install linux-perf)" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || {
    echo "profile-pull: perf record -a and the emulated network need root" >&2
    exit 1
}
for arg in "$@"; do
    case $arg in
    --mode | --mode=* | --systems | --systems=* | --loopback)
        echo "profile-pull: $arg is set by this script (pull mode, shoal, emulated network)" >&2
        exit 2
        ;;
    esac
done
exec "$REPO_DIR/bench/cluster-bench" --mode pull --systems shoal --perf "$@"
