#!/usr/bin/env bash
# Install what is missing, then start local Redis and Kafka and create the
# topics. Idempotent.
set -euo pipefail
D=$(dirname "$0")
"$D/install.sh"
"$D/redis.sh" start
"$D/kafka.sh" start
"$D/topics.sh"
