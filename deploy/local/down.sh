#!/usr/bin/env bash
# Stop the local Kafka broker and Redis (their data stays in $JD_LOCAL_DIR;
# remove that directory to start from scratch).
set -euo pipefail
D=$(dirname "$0")
"$D/kafka.sh" stop
"$D/redis.sh" stop
