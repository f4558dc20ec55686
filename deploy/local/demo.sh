#!/usr/bin/env bash
# The journeyd demo on a fresh machine: installs what is missing, builds,
# starts local Redis and Kafka, runs journeyd on the default configuration,
# feeds it realistic generated journeys and shows the live funnel: journeys
# reaching each phase, moving on, dropping off (and after which touchpoint).
#   JD_DEMO_CUSTOMERS (default 5000)  customers to simulate
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
. deploy/local/env.sh
CUSTOMERS=${JD_DEMO_CUSTOMERS:-5000}

./deploy/local/up.sh
jd_log "building"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 >/dev/null

LOG="$JD_LOCAL_DIR/journeyd-demo.log"
jd_log "starting journeyd -c config/journeyd.yaml (log: $LOG)"
./build/journeyd -c config/journeyd.yaml 2>>"$LOG" &
JPID=$!
trap 'kill -TERM $JPID 2>/dev/null; wait $JPID 2>/dev/null || true' EXIT

SEED=$(date +%s)
jd_log "generating $CUSTOMERS customer journeys (seed $SEED) into journeyd.events"
# open loop: each event is stamped with its send time, so the funnel fills
# live; the heartbeats at the end move event time on by 29 days, so every
# journey's timeout fires and the drop-offs show
./build/journeyctl gen --seed "$SEED" --customers "$CUSTOMERS" --rate 10000 \
    --topic journeyd.events --brokers "$JD_KAFKA_BROKERS" \
    --dup-rate 0.01 --ooo-rate 0.03 --anon-rate 0.2 --invalid-rate 0.005 \
    --journeys "$JD_LOCAL_DIR/demo-journeys.ndjson" &
GPID=$!

show() {
    /usr/bin/python3 - <<'PY'
import json, subprocess
stats = json.loads(subprocess.run(["./build/journeyctl", "stats", "--json"], capture_output=True,
                                  text=True, check=True).stdout)["total"]
print("\n  events consumed %-9d applied %-9d duplicates %-6d dead-lettered %-5d merged ids %d" % (
    stats.get("consumed", 0), stats.get("applied", 0), stats.get("duplicate", 0),
    stats.get("deadletter", 0), stats.get("merged", 0)))
PY
    ./build/journeyctl funnel --top "${1:-0}"
}

for i in 1 2 3 4 5; do
    sleep 2
    show
done
wait $GPID || true
sleep 3
jd_log "every journey has timed out: the funnel, its drop-off points, by segment"
show 4
CUST=$(/usr/bin/python3 -c '
import json, sys
order = ["none", "search", "information", "purchase", "loyalty"]
js = [json.loads(l) for l in open(sys.argv[1])]
best = max((j for j in js if j["journey"] == 1 and j["merged"]),
           key=lambda j: (order.index(j["phase"]), j["events"]), default=js[0])
print(best["customer"])' "$JD_LOCAL_DIR/demo-journeys.ndjson")
echo
jd_log "a long journey, begun anonymously on one device: ./build/journeyctl journey $CUST"
./build/journeyctl journey "$CUST"
echo
jd_log "journeyd over HTTP: /readyz says $(curl -s http://127.0.0.1:9464/readyz); a few of its Prometheus gauges:"
curl -s http://127.0.0.1:9464/metrics | grep -E '^journeyd_(funnel_dropoff_rate|satisfaction_score)\{.*segment="all"|^journeyd_satisfaction_score\{.*window="all"' | head -12 || true
jd_log "the latest metric messages on the compacted topic journeyd.metrics:"
kcat -C -b "$JD_KAFKA_BROKERS" -t journeyd.metrics -e -q -o -3 -f '%k\n' 2>/dev/null | head -6 || true
echo
jd_log "try: ./build/journeyctl funnel --segment smb | ./build/journeyctl metrics --json | ./build/journeyctl journey <customer> --json | ./build/journeyctl stats"
jd_log "stop the services with ./deploy/local/down.sh"
