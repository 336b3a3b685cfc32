#!/usr/bin/env bash
# shoal in five minutes, on 127.0.0.1 only: a local registry with a sample
# image and an ORMB model, a shoal-agent in front of it, pulls through it with
# skopeo and curl, a tracker with three more agents prewarming a model through
# the peer-to-peer swarm, and the runtime configuration that points at shoal.
# DEMO_ONCE=1 runs every step and exits; otherwise it waits for Ctrl-C.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=/usr/bin/python3
OCIBUILD=$REPO_DIR/tests/system/ocibuild.py
BIN_DIR=${SHOAL_BIN_DIR:-$REPO_DIR/build/bin}
AGENT_BIN=$BIN_DIR/shoal-agent
TRACKER_BIN=$BIN_DIR/shoal-tracker
CTL_BIN=$BIN_DIR/shoalctl

case ${1:-} in
-h | --help)
    echo "Usage: deploy/demo.sh   (make demo builds first, then runs it)"
    echo "Env: DEMO_ONCE=1 exits after the demo; SHOAL_BIN_DIR picks the binary dir."
    exit 0
    ;;
esac

STEP=0
BOLD="" PLAIN=""
if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; fi
step() {
    STEP=$((STEP + 1))
    printf '\n%s== %d. %s%s\n' "$BOLD" "$STEP" "$*" "$PLAIN"
}
say() { printf '   %s\n' "$*"; }
fail() {
    if [ "$STEP" = 0 ]; then
        printf 'demo: cannot start: %s\n' "$*" >&2
    else
        printf '\ndemo: FAILED in step %d: %s\n' "$STEP" "$*" >&2
    fi
    exit 1
}
# show_log FILE: the end of a log, after a failure.
show_log() {
    printf '   --- last lines of %s ---\n' "$1" >&2
    tail -n 15 "$1" | sed 's/^/   /' >&2 || true
}

for tool in docker-registry skopeo curl; do
    command -v "$tool" >/dev/null || fail "'$tool' not found; run 'make deps'"
done
[ -x "$PYTHON" ] || fail "$PYTHON not found; run 'make deps'"
[ -f "$OCIBUILD" ] || fail "$OCIBUILD missing"
for bin in "$AGENT_BIN" "$TRACKER_BIN" "$CTL_BIN"; do
    [ -x "$bin" ] || fail "$bin not found; run 'make build' (or 'make demo')"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-demo.XXXXXX")
PIDS=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    [ "$rc" = 0 ] || [ "$rc" = 130 ] || echo "demo: stopped (exit $rc), temp files removed" >&2
    [ "$rc" != 130 ] || echo "demo: stopped, every process ended and $WORK removed"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo; exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# wait_http URL PID LOG NAME: 200 from URL, or fail if NAME dies or 30 s pass.
wait_http() {
    local i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$2" 2>/dev/null || { show_log "$3"; fail "$4 exited during start-up"; }
        curl -sf -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    show_log "$3"
    fail "$1 did not answer within 30 s"
}

# json FILE EXPR: evaluates a Python expression over the parsed JSON file `j`.
json() {
    "$PYTHON" -c 'import json, sys
j = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$1" "$2"
}

# metric_at URL NAME: a counter of the agent whose admin listener is at URL,
# summed over its label sets (per upstream, say); 0 if absent.
metric_at() {
    curl -sf "$1/metrics" |
        awk -v n="$2" '$1 == n || index($1, n "{") == 1 { v += $2 } END { printf "%d\n", v + 0 }'
}
# metric NAME: the same for the first agent.
metric() { metric_at "$AGENT_ADMIN_URL" "$1"; }
snapshot() {
    M_HITS=$(metric shoal_cache_hits_total)
    M_MISS=$(metric shoal_cache_misses_total)
    M_UP=$(metric shoal_upstream_bytes_total)
    M_TX=$(metric shoal_client_tx_bytes_total)
}
# report_delta: what the agent did since the last snapshot, from /metrics.
report_delta() {
    local h=$M_HITS m=$M_MISS u=$M_UP t=$M_TX
    snapshot
    say "shoal /metrics: cache hits +$((M_HITS - h)), misses +$((M_MISS - m)),"
    say "  bytes from the registry +$((M_UP - u)), bytes to the client +$((M_TX - t))"
}

# write_agent_config FILE LISTEN DATA_DIR ADMIN_LISTEN: a config whose default
# upstream, and only listed upstream, is the demo registry ($REG).
write_agent_config() {
    "$PYTHON" - "$1" "$2" "$3" "$4" "$REG" <<'EOF'
import json, sys
path, listen, data, admin, reg = sys.argv[1:]
cfg = {
    "listen": listen,
    "admin-listen": admin,
    "data-dir": data,
    "upstream": "http://" + reg,
    "log-level": "info",
    "cache-max-bytes": "1GiB",
    "upstreams": [{"host": reg, "url": "http://" + reg}],
}
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
EOF
}

# ---------------------------------------------------------------------------
step "Start a local registry (docker-registry) as the upstream"
REG_PORT=$(free_port)
REG=127.0.0.1:$REG_PORT
mkdir -p "$WORK/registry"
cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
http:
  addr: $REG
  secret: shoal-demo-not-a-secret
EOF
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/registry.log" 2>&1 &
PIDS+=($!)
wait_http "http://$REG/v2/" "$!" "$WORK/registry/registry.log" docker-registry
say "registry at http://$REG (storage $WORK/registry/storage)"

step "Push a sample image (demo/app:v1, 3 layers) and an ORMB model (demo/model:v1)"
"$PYTHON" "$OCIBUILD" image "$WORK/src-app" --tag v1 --layers 3 --layer-size 2MiB --seed 1 \
    >"$WORK/app.json" || fail "building the sample image"
"$PYTHON" "$OCIBUILD" ormb "$WORK/src-model" --tag v1 --size 8MiB --seed 2 \
    >"$WORK/model.json" || fail "building the model artifact"
"$PYTHON" "$OCIBUILD" push "$WORK/src-app" --registry "$REG" --repo demo/app --tag v1 \
    >/dev/null || fail "pushing demo/app:v1"
"$PYTHON" "$OCIBUILD" push "$WORK/src-model" --registry "$REG" --repo demo/model --tag v1 \
    >/dev/null || fail "pushing demo/model:v1"
APP_DIGEST=$(json "$WORK/app.json" 'j["digest"]')
APP_BYTES=$(json "$WORK/app.json" 'j["size"] + sum(b["size"] for b in j["blobs"])')
MODEL_DIGEST=$(json "$WORK/model.json" 'j["digest"]')
say "demo/app:v1    $APP_DIGEST, $APP_BYTES bytes in 5 blobs (manifest, config, 3 layers)"
say "demo/model:v1  $MODEL_DIGEST (ORMB: model config + weights tarball)"

step "Start shoal-agent with the registry as its upstream"
AGENT_PORT=$(free_port)
AGENT=127.0.0.1:$AGENT_PORT
AGENT_URL=http://$AGENT
AGENT_ADMIN=127.0.0.1:$(free_port)
AGENT_ADMIN_URL=http://$AGENT_ADMIN
DATA=$WORK/agent-data
CONFIG=$WORK/shoal-agent.json
write_agent_config "$CONFIG" "$AGENT" "$DATA" "$AGENT_ADMIN"
"$AGENT_BIN" --config "$CONFIG" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
wait_http "$AGENT_URL/_shoal/health" "$AGENT_PID" "$WORK/agent.log" shoal-agent
say "shoal-agent (pid $AGENT_PID) serving the OCI pull API at $AGENT_URL"
say "  and /metrics, /healthz, /readyz on its admin listener at $AGENT_ADMIN_URL"
say "config $CONFIG:"
sed 's/^/     /' "$CONFIG"
snapshot

# skopeo reads neither the host's registries.conf nor its policy here, so the
# demo behaves the same on every machine.
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$WORK/policy.json"
: >"$WORK/registries-empty.conf"
skopeo_copy() { # REGISTRIES_CONF SRC DEST
    skopeo --registries-conf "$1" --policy "$WORK/policy.json" copy --quiet \
        --src-tls-verify=false "$2" "$3" 2>"$WORK/skopeo.err" || {
        sed 's/^/   /' "$WORK/skopeo.err" >&2
        show_log "$WORK/agent.log"
        fail "skopeo copy $2"
    }
}

step "First pull: skopeo copy docker://$AGENT/demo/app:v1 (cache cold)"
skopeo_copy "$WORK/registries-empty.conf" "docker://$AGENT/demo/app:v1" "oci:$WORK/pull1:v1"
got=$(json "$WORK/pull1/index.json" 'j["manifests"][0]["digest"]')
[ "$got" = "$APP_DIGEST" ] || fail "pulled manifest $got, pushed $APP_DIGEST"
say "pulled $got into $WORK/pull1 (same digest as pushed)"
report_delta
[ $((M_UP)) -gt 0 ] || fail "the agent fetched nothing from the registry"

step "Second pull, the podman/CRI-O way: registries.conf mirrors $REG to shoal"
cat >"$WORK/registries.conf" <<EOF
[[registry]]
prefix = "$REG"
location = "$REG"
insecure = true

[[registry.mirror]]
location = "$AGENT"
insecure = true
EOF
sed 's/^/     /' "$WORK/registries.conf"
say "(The mirror needs no path because $REG is shoal's default upstream; a"
say " registry with a dotted name gets one, e.g. $AGENT/docker.io, see the last step.)"
say "skopeo copy docker://$REG/demo/app:v1 (the client names the registry; shoal answers)"
h0=$M_HITS
skopeo_copy "$WORK/registries.conf" "docker://$REG/demo/app:v1" "oci:$WORK/pull2:v1"
got=$(json "$WORK/pull2/index.json" 'j["manifests"][0]["digest"]')
[ "$got" = "$APP_DIGEST" ] || fail "pulled manifest $got, pushed $APP_DIGEST"
u0=$M_UP
report_delta
[ "$M_HITS" -gt "$h0" ] || fail "no cache hit on the second pull"
say "every blob came from shoal's cache; only the manifest ($((M_UP - u0)) bytes) was"
say "asked for again, because a tag can move (see --tag-cache-ttl)"

step "Fetch the ORMB model with curl, the containerd way (?ns=$REG)"
MODEL_MT='application/vnd.oci.image.manifest.v1+json'
curl -sf -H "Accept: $MODEL_MT" -o "$WORK/model-manifest.json" \
    "$AGENT_URL/v2/demo/model/manifests/v1?ns=$REG" || fail "GET model manifest"
say "manifest config type: $(json "$WORK/model-manifest.json" 'j["config"]["mediaType"]')"
LAYER=$(json "$WORK/model-manifest.json" 'j["layers"][0]["digest"]')
say "weights layer $LAYER, fetched twice:"
for pass in 1 2; do
    out=$(curl -sf -o "$WORK/model-layer" -w '%{size_download} %{time_total}' \
        "$AGENT_URL/v2/demo/model/blobs/$LAYER?ns=$REG") || fail "GET model layer"
    got=sha256:$(sha256sum "$WORK/model-layer" | awk '{ print $1 }')
    [ "$got" = "$LAYER" ] || fail "model layer sha256 is $got, expected $LAYER"
    read -r n t <<<"$out"
    say "pass $pass: $n bytes in $(awk -v t="$t" 'BEGIN { printf "%.0f", t * 1000 }') ms, sha256 verified"
done
report_delta

step "Where the data lives"
nblobs=$(find "$DATA/blobs" -type f 2>/dev/null | wc -l)
say "$DATA/blobs/sha256/<hex>: $nblobs complete files, $(du -sh "$DATA" | cut -f1) on disk"
say "$DATA/partial/: downloads in progress (resumed after a restart)"
say "cache size by /metrics: $(metric shoal_cache_bytes) bytes; agent log: $WORK/agent.log"

step "A local cluster: shoal-tracker, three agents, shoalctl prewarm"
# Everything the step starts joins PIDS, so the EXIT trap ends it too.
SECRET=$WORK/cluster-secret
(umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' >"$SECRET")
TRACKER_PORT=$(free_port)
TRACKER_URL=http://127.0.0.1:$TRACKER_PORT
"$TRACKER_BIN" --listen "127.0.0.1:$TRACKER_PORT" --cluster-secret-file "$SECRET" \
    --admin-listen "127.0.0.1:$(free_port)" >"$WORK/tracker.log" 2>&1 &
PIDS+=($!)
wait_http "$TRACKER_URL/_shoal/health" "$!" "$WORK/tracker.log" shoal-tracker
say "shoal-tracker at $TRACKER_URL (cluster secret: $SECRET, generated)"

NODE_ADMIN_URLS=() NODE_LOGS=() CTL_AGENTS=()
for n in 1 2 3; do
    port=$(free_port)
    peer_port=$(free_port)
    admin_port=$(free_port)
    write_agent_config "$WORK/node$n.json" "127.0.0.1:$port" "$WORK/node$n-data" \
        "127.0.0.1:$admin_port"
    "$AGENT_BIN" --config "$WORK/node$n.json" --tracker "$TRACKER_URL" \
        --peer-listen "127.0.0.1:$peer_port" --cluster-secret-file "$SECRET" \
        >"$WORK/node$n.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$port/_shoal/health" "$!" "$WORK/node$n.log" "shoal-agent node$n"
    NODE_ADMIN_URLS+=("http://127.0.0.1:$admin_port")
    NODE_LOGS+=("$WORK/node$n.log")
    CTL_AGENTS+=(--agent "http://127.0.0.1:$port")
    say "node$n: mirror http://127.0.0.1:$port, peers 127.0.0.1:$peer_port, data $WORK/node$n-data"
done
say "each: shoal-agent --config $WORK/nodeN.json --tracker $TRACKER_URL \\"
say "        --peer-listen 127.0.0.1:PORT --cluster-secret-file $SECRET"

# Its own repository, so demo/model:v1 stays the ORMB model of steps 2 and 6.
MP_REF=$REG/demo/modelpack:v1
"$PYTHON" "$OCIBUILD" modelpack "$WORK/src-modelpack" --tag v1 --size 96MiB --seed 3 \
    >"$WORK/modelpack.json" || fail "building the ModelPack model"
"$PYTHON" "$OCIBUILD" push "$WORK/src-modelpack" --registry "$REG" --repo demo/modelpack \
    --tag v1 >/dev/null || fail "pushing $MP_REF"
MP_BYTES=$(json "$WORK/modelpack.json" 'j["size"] + sum(b["size"] for b in j["blobs"])')
MP_WEIGHT=$(json "$WORK/modelpack.json" '[b["size"] for b in j["blobs"] if b["mediaType"].endswith(".raw")][0]')
say "pushed $MP_REF (CNCF ModelPack): one raw weight layer of $MP_WEIGHT bytes,"
say "  $MP_BYTES bytes with manifest and config"

say "\$ shoalctl prewarm ${CTL_AGENTS[*]} \\"
say "      $MP_REF"
if ! "$CTL_BIN" prewarm "${CTL_AGENTS[@]}" --timeout 60s "$MP_REF"; then
    for log in "${NODE_LOGS[@]}" "$WORK/tracker.log"; do show_log "$log"; done
    fail "shoalctl prewarm did not fill every agent"
fi

say "what each agent fetched, from its /metrics:"
up_sum=0
for n in 1 2 3; do
    up=$(metric_at "${NODE_ADMIN_URLS[$((n - 1))]}" shoal_upstream_bytes_total)
    rx=$(metric_at "${NODE_ADMIN_URLS[$((n - 1))]}" shoal_peer_rx_bytes_total)
    up_sum=$((up_sum + up))
    say "  node$n: $up bytes from the registry (shoal_upstream_bytes_total),"
    say "         $rx bytes from its peers (shoal_peer_rx_bytes_total)"
done
ratio=$(awk -v u="$up_sum" -v t="$MP_BYTES" 'BEGIN { printf "%.2f", u / t }')
say "together the three agents fetched $up_sum bytes from the registry for a"
say "  $MP_BYTES-byte model: ${ratio}x its size (1.0x = each byte left the registry once;"
say "  without the swarm it would be 3.0x)"
say "every blob verified: each agent checked every blob's sha256 before caching"
say "  it, and shoalctl exited 0 (every agent holds every blob)"

step "Point your runtimes at shoal"
say "containerd: /etc/containerd/certs.d/$REG/hosts.toml (or certs.d/_default/)"
cat <<EOF | sed 's/^/     /'
server = "http://$REG"

[host."http://$AGENT"]
  capabilities = ["pull", "resolve"]
EOF
say "For Docker Hub use certs.d/docker.io/hosts.toml with"
say "server = \"https://registry-1.docker.io\" and the same [host] entry."
say "podman/CRI-O: /etc/containers/registries.conf (same shape as step 5):"
cat <<EOF | sed 's/^/     /'
[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"

[[registry.mirror]]
location = "$AGENT/docker.io"
insecure = true
EOF

if [ "${DEMO_ONCE:-0}" = 1 ]; then
    printf '\ndemo: all steps passed (DEMO_ONCE=1, stopping)\n'
    exit 0
fi
printf '\ndemo: shoal-agent is running at %s (registry %s). Ctrl-C stops everything.\n' \
    "$AGENT_URL" "$REG"
say "try: skopeo inspect --tls-verify=false docker://$AGENT/demo/app:v1"
say "     curl -s $AGENT_ADMIN_URL/metrics | grep ^shoal_"
# `wait` returns as soon as a trapped signal arrives, so Ctrl-C is immediate.
wait "$AGENT_PID" || true
fail "shoal-agent exited unexpectedly"
