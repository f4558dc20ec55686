#!/usr/bin/env bash
# Create journeyd's topics on the local broker (idempotent).
#   topics.sh                       the default topics (below)
#   topics.sh create NAME PARTITIONS [key=value ...]
#   topics.sh delete NAME
set -euo pipefail
. "$(dirname "$0")/env.sh"

admin() {
    /usr/bin/python3 - "$JD_KAFKA_BROKERS" "$@" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
brokers, op, name = sys.argv[1], sys.argv[2], sys.argv[3]
a = AdminClient({"bootstrap.servers": brokers})
if op == "delete":
    if name in a.list_topics(timeout=10).topics:
        a.delete_topics([name])[name].result(30)
    sys.exit(0)
parts = int(sys.argv[4])
conf = dict(kv.split("=", 1) for kv in sys.argv[5:])
if name in a.list_topics(timeout=10).topics:
    sys.exit(0)
a.create_topics([NewTopic(name, parts, 1, config=conf)])[name].result(30)
print("[deploy] created topic %s (%d partitions%s)" % (
    name, parts, ", " + ",".join(sys.argv[5:]) if conf else ""), file=sys.stderr)
PY
}

case "${1:-defaults}" in
defaults)
    admin create journeyd.events 12
    admin create journeyd.deadletter 3
    admin create journeyd.metrics 12 cleanup.policy=compact
    admin create journeyd.alerts 3
    ;;
create) shift; admin create "$@" ;;
delete) shift; admin delete "$@" ;;
*) echo "usage: $0 [create NAME PARTITIONS [key=value...] | delete NAME]" >&2; exit 2 ;;
esac
