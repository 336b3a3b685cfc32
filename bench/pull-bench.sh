#!/usr/bin/env bash
# Single-blob pull benchmark on 127.0.0.1: the reference registry served
# directly, through a fresh shoal-agent (cold, then warm from its cache), and
# through the reference registry's own pull-through cache (cold, then warm).
# Prints a Markdown report and writes it to bench/results/. See bench/README.md.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=/usr/bin/python3
CMDLINE="$(printf '%q ' "$0" "$@")"
CMDLINE=${CMDLINE% }

SIZE_MIB=1024
REPS=5
KEEP=0
BIN_DIR=${SHOAL_BIN_DIR:-$REPO_DIR/build/bin}
CMP_DIR=
OUT_DIR=$REPO_DIR/bench/results

usage() {
    cat <<EOF
Usage: bench/pull-bench.sh [options]

Pushes one random blob into a local docker-registry, then times pulling it
with curl: (a) direct from the registry, (b) through a fresh shoal-agent
(cold), (c) the same agent again (warm), (d) through a docker-registry
pull-through cache (cold, then warm). Everything runs on 127.0.0.1.

Options:
  --size-mib N   blob size in MiB (default 1024)
  --reps N       repetitions of every measurement (default 5)
  --quick        smoke test: --size-mib 64 --reps 2
  --bin-dir DIR  where shoal-agent lives (default \$SHOAL_BIN_DIR or build/bin)
  --compare DIR  also measure DIR/shoal-agent (another build, e.g. the commit
                 before a change) in every round, the two agents' turns
                 alternating, and report this build against it
  --out-dir DIR  where the report is written (default bench/results)
  --keep         keep the temp dir (registries' storage, agent data, logs)
  -h, --help     this text

Report: Markdown on stdout and in <out-dir>/pull-bench-<date>.md.
Exit status: 0 when every system was measured and every download matched its
digest (targets are reported as PASS/MISS, never asserted), 1 otherwise.
EOF
}

die() {
    echo "pull-bench: error: $*" >&2
    exit 1
}
note() { echo "pull-bench: $*" >&2; }

need_int() { # name value
    [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"
}

while [ $# -gt 0 ]; do
    case $1 in
    --size-mib) [ $# -ge 2 ] || die "--size-mib needs a value"; need_int --size-mib "$2"; SIZE_MIB=$2; shift 2 ;;
    --reps) [ $# -ge 2 ] || die "--reps needs a value"; need_int --reps "$2"; REPS=$2; shift 2 ;;
    --quick) SIZE_MIB=64; REPS=2; shift ;;
    --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
    --compare) [ $# -ge 2 ] || die "--compare needs a value"; CMP_DIR=$2; shift 2 ;;
    --out-dir) [ $# -ge 2 ] || die "--out-dir needs a value"; OUT_DIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
    esac
done

for tool in docker-registry curl awk; do
    command -v "$tool" >/dev/null || die "'$tool' not found (run 'make deps')"
done
[ -x "$PYTHON" ] || die "$PYTHON not found"

SIZE_BYTES=$((SIZE_MIB * 1024 * 1024))

# sha256 of stdin as hex. openssl uses the CPU's SHA extensions where
# coreutils' sha256sum does not (8x slower on SHA-NI machines), and it is the
# same libcrypto code the agent hashes with.
if command -v openssl >/dev/null; then
    SHA_TOOL=openssl
    sha256_hex() { openssl dgst -sha256 -r | awk '{ print $1 }'; }
else
    SHA_TOOL=sha256sum
    sha256_hex() { sha256sum | awk '{ print $1 }'; }
fi
if grep -qw sha_ni /proc/cpuinfo 2>/dev/null; then SHA_NI=yes; else SHA_NI=no; fi
AGENT_BIN=$BIN_DIR/shoal-agent
CMP_BIN=
if [ -n "$CMP_DIR" ]; then
    CMP_BIN=$CMP_DIR/shoal-agent
    [ -x "$CMP_BIN" ] || die "--compare $CMP_DIR: no executable shoal-agent in it"
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------
# Temp dir and cleanup. Storage goes to tmpfs when it can hold everything at
# once (upstream copy, proxy copy, agent copy, the source file), so the disk
# is not what gets measured.
need_kib=$(((SIZE_BYTES * 4 + 256 * 1024 * 1024) / 1024))
TMP_BASE=${TMPDIR:-/tmp}
STORAGE_KIND="disk ($TMP_BASE)"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm_free_kib=$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')
    if [ "${shm_free_kib:-0}" -ge "$need_kib" ]; then
        TMP_BASE=/dev/shm
        STORAGE_KIND="tmpfs (/dev/shm)"
    else
        note "/dev/shm has $((shm_free_kib / 1024)) MiB free, needs $((need_kib / 1024)) MiB: using $TMP_BASE"
    fi
fi
WORK=$(mktemp -d "$TMP_BASE/shoal-bench.XXXXXX")

PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then
        note "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops one process we started: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
    local pid=$1 i keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in "${PIDS[@]}"; do
        [ "$i" = "$pid" ] || keep+=("$i")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# Asks the kernel for a free loopback port. The port is released before the
# server binds it; nothing else on a bench machine should grab it meanwhile.
free_port() {
    "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# wait_http URL PID LOG: polls URL until it answers 200, or the process dies.
wait_http() {
    local url=$1 pid=$2 log=$3 i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            note "process $pid exited early; last log lines ($log):"
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        if curl -sf -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.1
    done
    note "$url not ready after 30 s; last log lines ($log):"
    tail -n 20 "$log" >&2 || true
    return 1
}

# start_registry NAME PORT [REMOTEURL]: a docker-registry with its own storage;
# with REMOTEURL it is a pull-through cache. Sets LAST_PID.
start_registry() {
    local name=$1 port=$2 remote=${3:-} dir=$WORK/$1
    rm -rf "$dir"
    mkdir -p "$dir/storage"
    {
        echo "version: 0.1"
        echo "log:"
        echo "  level: warn"
        echo "  accesslog:"
        echo "    disabled: true"
        echo "storage:"
        echo "  cache:"
        echo "    blobdescriptor: inmemory"
        echo "  filesystem:"
        echo "    rootdirectory: $dir/storage"
        echo "  maintenance:"
        echo "    uploadpurging:"
        echo "      enabled: false"
        echo "http:"
        echo "  addr: 127.0.0.1:$port"
        echo "  secret: shoal-bench-not-a-secret"
        if [ -n "$remote" ]; then
            echo "proxy:"
            echo "  remoteurl: $remote"
        fi
    } >"$dir/config.yml"
    docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_http "http://127.0.0.1:$port/v2/" "$LAST_PID" "$dir/registry.log" ||
        die "docker-registry '$name' did not start"
}

# start_agent NAME PORT UPSTREAM BIN: a fresh shoal-agent (the binary BIN)
# with an empty data dir. Sets LAST_PID; returns 1 (with the log shown) if it
# does not come up.
start_agent() {
    local name=$1 port=$2 upstream=$3 bin=$4 dir=$WORK/$1
    rm -rf "$dir"
    mkdir -p "$dir/data"
    "$bin" --listen "127.0.0.1:$port" --admin-listen off --data-dir "$dir/data" \
        --upstream "$upstream" --log-level info >"$dir/agent.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_http "http://127.0.0.1:$port/_shoal/health" "$LAST_PID" "$dir/agent.log"
}

# cpu_ticks PID: utime + stime in clock ticks. The fields are counted after
# the last ')' because the command name may contain spaces.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat") || return 1
    stat=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$stat"
}

hwm_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# busy_ticks: clock ticks the whole machine's CPUs have been busy (user, nice,
# system, irq, softirq; not idle, iowait or steal), from /proc/stat.
busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

# ticks_per_gib TICKS: CPU seconds per GiB of the blob.
ticks_per_gib() {
    awk -v t="$1" -v h="$CLK_TCK" -v mib="$SIZE_MIB" 'BEGIN { printf "%.2f", t / h * 1024 / mib }'
}

# timed_pull URL: prints "total_seconds first_byte_seconds machine_cpu_s_per_gib"
# (the whole machine's CPU during the pull: curl, the server, the kernel and
# whatever else runs); fails unless the whole blob arrived.
timed_pull() {
    local out t f n code m0 m1
    m0=$(busy_ticks)
    out=$(curl -s -o /dev/null -w '%{time_total} %{time_starttransfer} %{size_download} %{http_code}' "$1") || {
        note "curl failed on $1"
        return 1
    }
    m1=$(busy_ticks)
    read -r t f n code <<<"$out"
    if [ "$code" != 200 ] || [ "$n" != "$SIZE_BYTES" ]; then
        note "GET $1: status $code, $n bytes (expected 200, $SIZE_BYTES bytes)"
        return 1
    fi
    echo "$t $f $(ticks_per_gib $((m1 - m0)))"
}

# checked_pull URL WHAT: untimed pull, hashed on the fly.
checked_pull() {
    local got
    got=$(curl -sf "$1" | sha256_hex)
    if [ "$got" != "$BLOB_HEX" ]; then
        note "$2: downloaded sha256 $got, expected $BLOB_HEX"
        return 1
    fi
}

# ---------------------------------------------------------------------------
# Upstream registry with one random blob.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
UP_PORT=$(free_port)
UPSTREAM=http://127.0.0.1:$UP_PORT
note "storage: $STORAGE_KIND, work dir $WORK"
note "starting upstream docker-registry on $UPSTREAM"
start_registry upstream "$UP_PORT"

note "generating and pushing a ${SIZE_MIB} MiB random blob"
head -c "$SIZE_BYTES" /dev/urandom >"$WORK/blob"
# Timing the hash gives a floor for what verifying the blob costs any server.
h0=$(date +%s.%N)
BLOB_HEX=$(sha256_hex <"$WORK/blob")
h1=$(date +%s.%N)
HASH_S=$(awk -v a="$h0" -v b="$h1" 'BEGIN { printf "%.3f", b - a }')
DIGEST=sha256:$BLOB_HEX
loc=$(curl -sf -X POST -D - -o /dev/null "$UPSTREAM/v2/bench/blob/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }') ||
    die "upload start (POST /v2/bench/blob/blobs/uploads/) failed"
[ -n "$loc" ] || die "upload start returned no Location"
case $loc in
http*) ;;
*) loc=$UPSTREAM$loc ;;
esac
case $loc in
*\?*) put_url="$loc&digest=$DIGEST" ;;
*) put_url="$loc?digest=$DIGEST" ;;
esac
code=$(curl -s -o "$WORK/put.out" -w '%{http_code}' -T "$WORK/blob" \
    -H 'Content-Type: application/octet-stream' "$put_url") || die "blob upload failed"
[ "$code" = 201 ] || die "blob upload: status $code: $(head -c 300 "$WORK/put.out")"
rm -f "$WORK/blob"
BLOB_PATH=/v2/bench/blob/blobs/$DIGEST
note "pushed $DIGEST"

# ---------------------------------------------------------------------------
# Measurements. Round 0 is an untimed check that every system returns the
# right bytes (hashing inline would slow the timed pulls); rounds
# 1..REPS are timed, interleaving the systems so drift hits them alike.
T_DIRECT=()
T_SCOLD=()
T_SWARM=()
T_PCOLD=()
T_PWARM=()
F_DIRECT=() F_SCOLD=() F_SWARM=() F_PCOLD=() F_PWARM=()
# shellcheck disable=SC2034 # read by name in run_shoal and the report
M_DIRECT_CPU=() M_SCOLD_CPU=() M_SWARM_CPU=() M_PCOLD_CPU=() M_PWARM_CPU=()
CPU_COLD=()
CPU_WARM=()
CPU_COLD_GIB=()
CPU_WARM_GIB=()
HWM=()
# The same for the --compare build (C_ prefix). run_shoal and the report
# reach all of these by name.
# shellcheck disable=SC2034
C_T_SCOLD=() C_T_SWARM=() C_F_SCOLD=() C_F_SWARM=() C_M_SCOLD_CPU=() C_M_SWARM_CPU=()
# shellcheck disable=SC2034
C_CPU_COLD=() C_CPU_WARM=() C_CPU_COLD_GIB=() C_CPU_WARM_GIB=() C_HWM=()
FAILED=()
AGENT_STATE=ok
C_AGENT_STATE=ok
if [ ! -x "$AGENT_BIN" ]; then
    AGENT_STATE="skipped: $AGENT_BIN not found (build it with 'make build')"
    note "$AGENT_STATE"
    FAILED+=("shoal-agent missing")
fi

# run_shoal ROUND PREFIX: a fresh agent, cold pull, warm pull, stop. PREFIX
# is "" for this build and C_ for the --compare build: the agent binary, the
# arrays the results go to and the state variable are the ones it names.
run_shoal() {
    local round=$1 pre=$2 port pid c0 c1 c2 t a b m bin=$AGENT_BIN
    local -n state=${pre}AGENT_STATE t_cold=${pre}T_SCOLD f_cold=${pre}F_SCOLD \
        m_cold=${pre}M_SCOLD_CPU t_warm=${pre}T_SWARM f_warm=${pre}F_SWARM \
        m_warm=${pre}M_SWARM_CPU cpu_cold=${pre}CPU_COLD cpu_warm=${pre}CPU_WARM \
        gib_cold=${pre}CPU_COLD_GIB gib_warm=${pre}CPU_WARM_GIB hwm=${pre}HWM
    [ -z "$pre" ] || bin=$CMP_BIN
    port=$(free_port)
    if ! start_agent "agent-$pre$round" "$port" "$UPSTREAM" "$bin"; then
        stop_pid "$LAST_PID"
        state="failed: $bin did not become healthy (log above)"
        return 1
    fi
    pid=$LAST_PID
    local url=http://127.0.0.1:$port$BLOB_PATH
    if [ "$round" = 0 ]; then
        if ! checked_pull "$url" "shoal cold" || ! checked_pull "$url" "shoal warm"; then
            state="failed: wrong bytes from $bin"
            stop_pid "$pid"
            return 1
        fi
        stop_pid "$pid"
        return 0
    fi
    c0=$(cpu_ticks "$pid")
    t=$(timed_pull "$url") || {
        state="failed: cold pull through $bin"
        stop_pid "$pid"
        return 1
    }
    read -r a b m <<<"$t"
    t_cold+=("$a") f_cold+=("$b") m_cold+=("$m")
    c1=$(cpu_ticks "$pid")
    t=$(timed_pull "$url") || {
        state="failed: warm pull through $bin"
        stop_pid "$pid"
        return 1
    }
    read -r a b m <<<"$t"
    t_warm+=("$a") f_warm+=("$b") m_warm+=("$m")
    c2=$(cpu_ticks "$pid")
    cpu_cold+=("$(awk -v a="$c0" -v b="$c1" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / h }')")
    cpu_warm+=("$(awk -v a="$c1" -v b="$c2" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / h }')")
    gib_cold+=("$(ticks_per_gib $((c1 - c0)))")
    gib_warm+=("$(ticks_per_gib $((c2 - c1)))")
    hwm+=("$(hwm_kib "$pid")")
    stop_pid "$pid"
}

# shoal_turn ROUND PREFIX: run_shoal unless that build already failed.
shoal_turn() {
    local round=$1 pre=$2
    local -n state=${pre}AGENT_STATE
    [ "$state" = ok ] || return 0
    if ! run_shoal "$round" "$pre"; then
        note "shoal-agent${pre:+ (--compare)}: $state; continuing without it"
        FAILED+=("shoal-agent${pre:+ (--compare)}")
    fi
    [ "$KEEP" = 1 ] || rm -rf "$WORK/agent-$pre$round"
}

# run_proxy ROUND: fresh pull-through registry, cold pull, warm pull, stop.
run_proxy() {
    local round=$1 port pid t a b m
    port=$(free_port)
    start_registry "proxy-$round" "$port" "$UPSTREAM"
    pid=$LAST_PID
    local url=http://127.0.0.1:$port$BLOB_PATH
    if [ "$round" = 0 ]; then
        if ! checked_pull "$url" "proxy cold" || ! checked_pull "$url" "proxy warm"; then
            die "registry proxy returned wrong bytes"
        fi
    else
        t=$(timed_pull "$url") || die "cold pull through registry proxy failed"
        read -r a b m <<<"$t"
        T_PCOLD+=("$a") F_PCOLD+=("$b") M_PCOLD_CPU+=("$m")
        t=$(timed_pull "$url") || die "warm pull through registry proxy failed"
        read -r a b m <<<"$t"
        T_PWARM+=("$a") F_PWARM+=("$b") M_PWARM_CPU+=("$m")
    fi
    stop_pid "$pid"
    [ "$KEEP" = 1 ] || rm -rf "$WORK/proxy-$round"
}

for ((round = 0; round <= REPS; round++)); do
    if [ "$round" = 0 ]; then
        note "round 0: checking sha256 of every system's download"
        checked_pull "$UPSTREAM$BLOB_PATH" "direct" || die "direct pull returned wrong bytes"
    else
        note "round $round/$REPS"
        t=$(timed_pull "$UPSTREAM$BLOB_PATH") || die "direct pull failed"
        read -r a b m <<<"$t"
        T_DIRECT+=("$a") F_DIRECT+=("$b") M_DIRECT_CPU+=("$m")
    fi
    if [ -z "$CMP_BIN" ]; then
        shoal_turn "$round" ""
    elif ((round % 2)); then # turns alternate, so drift hits both builds alike
        shoal_turn "$round" ""
        shoal_turn "$round" C_
    else
        shoal_turn "$round" C_
        shoal_turn "$round" ""
    fi
    run_proxy "$round"
done

# ---------------------------------------------------------------------------
# Report.
# stats V...: "median min max" (median of an even count = mean of the middle
# two), with STATS_FMT decimals (default 3).
stats() {
    [ $# -gt 0 ] || { echo "- - -"; return; }
    printf '%s\n' "$@" | sort -g | awk -v d="${STATS_FMT:-3}" '{ v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            f = "%." d "f"
            printf f " " f " " f "\n", m, v[1], v[NR]
        }'
}
median() { stats "$@" | awk '{ print $1 }'; }

row() { # label first_byte_median total_seconds...
    local label=$1 fb=$2 m lo hi
    shift 2
    read -r m lo hi <<<"$(stats "$@")"
    if [ "$m" = - ]; then
        echo "| $label | n/a | n/a | n/a | n/a | n/a |"
        return
    fi
    awk -v l="$label" -v m="$m" -v lo="$lo" -v hi="$hi" -v mib="$SIZE_MIB" -v fb="$fb" \
        'BEGIN { printf "| %s | %.3f | %.3f | %.3f | %.0f | %.3f |\n", l, m, lo, hi, (m > 0 ? mib / m : 0), fb }'
}

# target LABEL NUM DEN LIMIT: ratio NUM/DEN against "<= LIMIT".
target() {
    local label=$1 num=$2 den=$3 limit=$4
    if [ -z "$num" ] || [ "$num" = - ] || [ -z "$den" ] || [ "$den" = - ]; then
        echo "| $label | n/a | <= $limit | SKIP |"
        return
    fi
    awk -v l="$label" -v n="$num" -v d="$den" -v lim="$limit" 'BEGIN {
        r = (d > 0) ? n / d : 0
        printf "| %s | %.2fx | <= %sx | %s |\n", l, r, lim, (r <= lim) ? "PASS" : "MISS"
    }'
}

# limit LABEL VALUE LIMIT UNIT: an absolute value against "<= LIMIT".
limit() {
    local label=$1 v=$2 lim=$3 unit=$4
    if [ -z "$v" ] || [ "$v" = - ]; then
        echo "| $label | n/a | <= $lim$unit | SKIP |"
        return
    fi
    awk -v l="$label" -v v="$v" -v lim="$lim" -v u="$unit" 'BEGIN {
        printf "| %s | %.2f%s | <= %s%s | %s |\n", l, v, u, lim, u, (v <= lim) ? "PASS" : "MISS"
    }'
}

M_DIRECT=$(median "${T_DIRECT[@]+"${T_DIRECT[@]}"}")
M_SCOLD=$(median "${T_SCOLD[@]+"${T_SCOLD[@]}"}")
M_SWARM=$(median "${T_SWARM[@]+"${T_SWARM[@]}"}")
M_PWARM=$(median "${T_PWARM[@]+"${T_PWARM[@]}"}")
M_PCOLD=$(median "${T_PCOLD[@]+"${T_PCOLD[@]}"}")
M_CPU_COLD_GIB=$(median "${CPU_COLD_GIB[@]+"${CPU_COLD_GIB[@]}"}")
M_CPU_WARM_GIB=$(median "${CPU_WARM_GIB[@]+"${CPU_WARM_GIB[@]}"}")

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
[ -n "$CPU_MODEL" ] || CPU_MODEL=$(uname -m)
MEM_MIB=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
AGENT_VERSION="n/a"
if [ -x "$AGENT_BIN" ]; then
    AGENT_VERSION="$AGENT_BIN ($(date -r "$AGENT_BIN" '+built %Y-%m-%d %H:%M'))"
fi
GIT_REV=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO_DIR" status --porcelain 2>/dev/null | head -1)" ]; then
    GIT_REV="$GIT_REV (working tree modified)"
fi

# cmp_row LABEL ARRAY [FMT]: this build's median, the --compare build's
# (the same array with the C_ prefix) and their ratio.
cmp_row() {
    local label=$1 arr="$2[@]" carr="C_$2[@]" a b
    a=$(STATS_FMT=${3:-3} median ${!arr+"${!arr}"})
    b=$(STATS_FMT=${3:-3} median ${!carr+"${!carr}"})
    awk -v l="$label" -v a="$a" -v b="$b" 'BEGIN {
        r = (a != "-" && b != "-" && b > 0) ? sprintf("%.3fx", a / b) : "n/a"
        printf "| %s | %s | %s | %s |\n", l, a, b, r
    }'
}

compare_report() {
    local i n=0 ahead=0 peak_kib=0 cpeak_kib=0 k
    echo
    echo "This build against the --compare build ($CMP_BIN), the two agents"
    echo "taking turns in every round (which goes first alternates):"
    echo
    echo "| median | this build | --compare build | this / compare |"
    echo "|---|---:|---:|---:|"
    cmp_row "cold pull s" T_SCOLD
    cmp_row "cold pull, first byte s" F_SCOLD
    cmp_row "warm pull s" T_SWARM
    cmp_row "agent CPU s per cold GiB" CPU_COLD_GIB 2
    cmp_row "agent CPU s per warm GiB" CPU_WARM_GIB 2
    cmp_row "whole machine CPU s per cold GiB" M_SCOLD_CPU 2
    for k in "${HWM[@]+"${HWM[@]}"}"; do ((k > peak_kib)) && peak_kib=$k; done
    for k in "${C_HWM[@]+"${C_HWM[@]}"}"; do ((k > cpeak_kib)) && cpeak_kib=$k; done
    awk -v a="$peak_kib" -v b="$cpeak_kib" 'BEGIN {
        sa = a > 0 ? sprintf("%.1f", a / 1024) : "-"
        sb = b > 0 ? sprintf("%.1f", b / 1024) : "-"
        printf "| peak RSS MiB (max over rounds) | %s | %s | %s |\n", sa, sb,
            (a > 0 && b > 0 ? sprintf("%.3fx", a / b) : "n/a")
    }'
    for ((i = 0; i < ${#T_SCOLD[@]} && i < ${#C_T_SCOLD[@]}; i++)); do
        n=$((n + 1))
        awk -v a="${T_SCOLD[i]}" -v b="${C_T_SCOLD[i]}" 'BEGIN { exit !(a < b) }' && ahead=$((ahead + 1))
    done
    echo
    echo "The cold pull was faster with this build in $ahead of $n rounds (pairs by round;"
    echo "on a shared machine a median ratio means little unless most pairs agree)."
}

report() {
    echo "# shoal pull benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo "Command: \`$CMDLINE\`"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| machine | $(nproc) CPUs, $CPU_MODEL, ${MEM_MIB} MiB RAM |"
    echo "| kernel | $(uname -sr) |"
    echo "| storage | $STORAGE_KIND (registries' storage and agent data dir) |"
    echo "| blob | ${SIZE_MIB} MiB ($SIZE_BYTES bytes), $DIGEST |"
    echo "| repetitions | $REPS timed, after one untimed sha256-checked round |"
    echo "| sha256 reference | $SHA_TOOL hashes the blob in ${HASH_S} s (CPU SHA extensions: $SHA_NI) |"
    echo "| load average | at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) |"
    echo "| registry | $(docker-registry --version 2>/dev/null | head -1) |"
    echo "| agent | $AGENT_VERSION, $AGENT_STATE |"
    if [ -n "$CMP_BIN" ]; then
        echo "| --compare agent | $CMP_BIN ($(date -r "$CMP_BIN" '+built %Y-%m-%d %H:%M')), $C_AGENT_STATE |"
    fi
    echo "| source | git $GIT_REV |"
    echo
    echo "Client: \`curl -s -o /dev/null -w '%{time_total} %{time_starttransfer}'\`"
    echo "on 127.0.0.1 (first byte = time to the first response byte). Every measured"
    echo "system's bytes matched the digest in the checked round, and every timed"
    echo "pull returned 200 with exactly $SIZE_BYTES bytes."
    echo
    echo "| system | median s | min s | max s | median MiB/s | median first byte s |"
    echo "|---|---:|---:|---:|---:|---:|"
    row "direct (docker-registry)" "$(median "${F_DIRECT[@]+"${F_DIRECT[@]}"}")" "${T_DIRECT[@]+"${T_DIRECT[@]}"}"
    row "shoal cold (fresh agent)" "$(median "${F_SCOLD[@]+"${F_SCOLD[@]}"}")" "${T_SCOLD[@]+"${T_SCOLD[@]}"}"
    row "shoal warm (from cache)" "$(median "${F_SWARM[@]+"${F_SWARM[@]}"}")" "${T_SWARM[@]+"${T_SWARM[@]}"}"
    if [ -n "$CMP_BIN" ]; then
        row "shoal cold, --compare build" "$(median "${C_F_SCOLD[@]+"${C_F_SCOLD[@]}"}")" "${C_T_SCOLD[@]+"${C_T_SCOLD[@]}"}"
        row "shoal warm, --compare build" "$(median "${C_F_SWARM[@]+"${C_F_SWARM[@]}"}")" "${C_T_SWARM[@]+"${C_T_SWARM[@]}"}"
    fi
    row "registry proxy cold" "$(median "${F_PCOLD[@]+"${F_PCOLD[@]}"}")" "${T_PCOLD[@]+"${T_PCOLD[@]}"}"
    row "registry proxy warm" "$(median "${F_PWARM[@]+"${F_PWARM[@]}"}")" "${T_PWARM[@]+"${T_PWARM[@]}"}"
    echo
    echo "| agent resources | median | min | max |"
    echo "|---|---:|---:|---:|"
    local m lo hi
    read -r m lo hi <<<"$(STATS_FMT=2 stats "${CPU_COLD[@]+"${CPU_COLD[@]}"}")"
    echo "| CPU s per cold pull (utime+stime) | $m | $lo | $hi |"
    read -r m lo hi <<<"$(STATS_FMT=2 stats "${CPU_WARM[@]+"${CPU_WARM[@]}"}")"
    echo "| CPU s per warm pull (utime+stime) | $m | $lo | $hi |"
    read -r m lo hi <<<"$(STATS_FMT=2 stats "${CPU_COLD_GIB[@]+"${CPU_COLD_GIB[@]}"}")"
    echo "| CPU s per cold GiB | $m | $lo | $hi |"
    read -r m lo hi <<<"$(STATS_FMT=2 stats "${CPU_WARM_GIB[@]+"${CPU_WARM_GIB[@]}"}")"
    echo "| CPU s per warm GiB | $m | $lo | $hi |"
    local hwm=()
    local k
    for k in "${HWM[@]+"${HWM[@]}"}"; do
        hwm+=("$(awk -v k="$k" 'BEGIN { printf "%.1f", k / 1024 }')")
    done
    read -r m lo hi <<<"$(STATS_FMT=1 stats "${hwm[@]+"${hwm[@]}"}")"
    echo "| peak RSS MiB (VmHWM after both pulls) | $m | $lo | $hi |"
    local hwm_max=$hi
    echo
    echo "Whole machine, CPU seconds per GiB pulled: every CPU's busy time during the pull"
    echo "(/proc/stat: user, system, interrupts), so curl, the serving process(es), the"
    echo "kernel and anything else running on the machine; compare with the load average."
    echo
    echo "| system | median | min | max |"
    echo "|---|---:|---:|---:|"
    local label arr
    for label in "direct (docker-registry):M_DIRECT_CPU" "shoal cold:M_SCOLD_CPU" \
        "shoal warm:M_SWARM_CPU" "registry proxy cold:M_PCOLD_CPU" \
        "registry proxy warm:M_PWARM_CPU"; do
        arr="${label##*:}[@]"
        read -r m lo hi <<<"$(STATS_FMT=2 stats ${!arr+"${!arr}"})"
        echo "| ${label%:*} | $m | $lo | $hi |"
    done
    [ -z "$CMP_BIN" ] || compare_report
    echo
    echo "| target (medians) | measured | target | result |"
    echo "|---|---:|---:|---|"
    target "cold: shoal cold / direct" "$M_SCOLD" "$M_DIRECT" 1.1
    target "warm: shoal warm / registry proxy warm" "$M_SWARM" "$M_PWARM" 0.5
    target "warm: shoal warm / direct registry" "$M_SWARM" "$M_DIRECT" 0.5
    target "cold: shoal cold / direct (issue 12)" "$M_SCOLD" "$M_DIRECT" 1.5
    target "cold: shoal cold / registry proxy cold (faster: below 1)" "$M_SCOLD" "$M_PCOLD" 0.99
    limit "agent CPU s per cold GiB" "$M_CPU_COLD_GIB" 1.0 " s"
    limit "agent CPU s per warm GiB" "$M_CPU_WARM_GIB" 0.15 " s"
    if [ "$hwm_max" = - ]; then
        echo "| agent peak RSS (max over reps) | n/a | <= 64 MiB | SKIP |"
    else
        awk -v h="$hwm_max" 'BEGIN {
            printf "| agent peak RSS (max over reps) | %.1f MiB | <= 64 MiB | %s |\n", h, (h <= 64) ? "PASS" : "MISS"
        }'
    fi
}

mkdir -p "$OUT_DIR"
OUT_FILE=$OUT_DIR/pull-bench-$(date '+%Y-%m-%d-%H%M%S').md
report >"$OUT_FILE.tmp"
mv "$OUT_FILE.tmp" "$OUT_FILE"
cat "$OUT_FILE"
note "report written to $OUT_FILE"

if [ ${#FAILED[@]} -gt 0 ]; then
    note "incomplete: ${FAILED[*]}"
    exit 1
fi
