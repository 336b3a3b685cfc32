#!/usr/bin/env bash
# Installs the Debian packages shoal needs to build, test and demo, but only
# those that are missing, so running it again is cheap and changes nothing.
# Every tool a system test runs is here (tests/system/conftest.py
# TOOL_PACKAGES; test_harness.py checks it): under CI=true a missing one fails
# its tests instead of skipping them.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang-format git clang libclang-rt-14-dev
  libuv1-dev libcurl4-openssl-dev libjansson-dev libxxhash-dev libssl-dev
  libhttp-parser-dev libcmocka-dev libhiredis-dev
  docker-registry skopeo podman containerd
  python3 python3-pytest apache2-utils redis-server curl openssl
  # tests/system/swarmpeer.py's ForgingSeed checks its XXH3-128 forgeries
  python3-xxhash
  iproute2 mount util-linux linux-perf python3-matplotlib python3-libtorrent aria2 opentracker
  # deploy/ checks (tests/system/test_deploy.py): systemd-analyze, the image
  # build (buildah, podman, debootstrap for the Debian base images), the
  # manifests' offline schema check
  systemd buildah debootstrap python3-yaml python3-kubernetes
)
# Installed without their recommends: prometheus only for promtool (its
# recommends bring node-exporter and its collectors).
NORECS=(prometheus)
# Commands that another package may already provide: kubectl comes from
# kubernetes-client only when no kubectl is installed (the two packages'
# kubectl files would clash).
CMDS=(kubectl:kubernetes-client)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

missing_norecs=()
for p in "${NORECS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing_norecs+=("$p")
  fi
done
for c in "${CMDS[@]}"; do
  if ! command -v "${c%%:*}" >/dev/null; then
    missing+=("${c#*:}")
  fi
done

if [ ${#missing[@]} -eq 0 ] && [ ${#missing_norecs[@]} -eq 0 ]; then
  echo "install-deps: all $((${#PKGS[@]} + ${#NORECS[@]} + ${#CMDS[@]})) packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]} ${missing_norecs[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get install -y -q "${missing[@]}"
fi
if [ ${#missing_norecs[@]} -gt 0 ]; then
  $SUDO apt-get install -y -q --no-install-recommends "${missing_norecs[@]}"
fi
