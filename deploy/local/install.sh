#!/usr/bin/env bash
# Install the Debian packages journeyd needs to build, test and run locally.
# Idempotent: only missing packages are installed, and `apt-get update` runs
# only when something is missing.
set -euo pipefail
. "$(dirname "$0")/env.sh"

PACKAGES=(
    build-essential cmake ninja-build pkg-config git
    librdkafka-dev libhiredis-dev libmsgpack-dev libyaml-dev libmicrohttpd-dev libcriterion-dev
    redis-server redis-tools kcat maven valgrind curl
    prometheus  # for promtool (checks /metrics); on a systemd host it also enables a Prometheus on :9090
    python3 python3-confluent-kafka python3-redis python3-msgpack python3-jsonschema
)
command -v java >/dev/null 2>&1 || PACKAGES+=(openjdk-17-jre-headless)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    jd_log "all packages present"
    exit 0
fi
[ "$(id -u)" = 0 ] || jd_die "missing packages (${missing[*]}): run as root"
jd_log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
jd_log "installed ${#missing[@]} packages"
