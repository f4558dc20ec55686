#!/usr/bin/env bash
# A single-node Apache Kafka broker in KRaft mode (combined broker and
# controller) on 127.0.0.1:$JD_KAFKA_PORT, for local runs and tests.
#   kafka.sh fetch    fetch the broker jars from Maven Central (pom.xml)
#   kafka.sh start    fetch if needed, format the storage once, start, wait
#   kafka.sh stop     stop (SIGTERM, then SIGKILL after 30 s)
#   kafka.sh status   exit 0 if the broker answers
# Idempotent: start on a running broker and stop on a stopped one do nothing.
set -euo pipefail
. "$(dirname "$0")/env.sh"

DIR="$JD_LOCAL_DIR/kafka"
LIBS="$DIR/libs"
PIDFILE="$DIR/kafka.pid"
STAMP="$LIBS/.fetched-$(sha1sum "$JD_DEPLOY_DIR/pom.xml" | cut -c1-12)"

fetch() {
    [ -e "$STAMP" ] && return 0
    jd_log "fetching Kafka broker jars from Maven Central"
    rm -rf "$LIBS"
    mkdir -p "$LIBS"
    mvn -B -q -f "$JD_DEPLOY_DIR/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$LIBS" -DincludeScope=runtime
    touch "$STAMP"
}

answers() { kcat -L -b "$JD_KAFKA_BROKERS" -m 3 >/dev/null 2>&1; }

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

write_config() {
    cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$JD_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$JD_KAFKA_PORT,CONTROLLER://127.0.0.1:$JD_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$JD_KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=3000
log.retention.hours=168
PROPS
    cat >"$DIR/log4j.properties" <<PROPS
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$DIR/server.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS
}

java_cp() { java -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" "$@"; }

format() {
    [ -f "$DIR/data/meta.properties" ] && return 0
    [ -f "$DIR/cluster.id" ] || java_cp kafka.tools.StorageTool random-uuid >"$DIR/cluster.id"
    jd_log "formatting KRaft storage (cluster $(cat "$DIR/cluster.id"))"
    java_cp kafka.tools.StorageTool format -t "$(cat "$DIR/cluster.id")" \
        -c "$DIR/server.properties" >/dev/null
}

start() {
    if running && answers; then
        jd_log "kafka already running on $JD_KAFKA_BROKERS"
        return 0
    fi
    fetch
    mkdir -p "$DIR/data"
    write_config
    format
    jd_log "starting kafka on $JD_KAFKA_BROKERS"
    KAFKA_HEAP="${JD_KAFKA_HEAP:--Xms512m -Xmx1g}"
    # shellcheck disable=SC2086
    setsid nohup java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" \
        kafka.Kafka "$DIR/server.properties" >"$DIR/stdout.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    jd_wait 120 "kafka on $JD_KAFKA_BROKERS" answers
    jd_log "kafka up"
}

stop() {
    if ! running; then
        rm -f "$PIDFILE"
        return 0
    fi
    local pid i
    pid=$(cat "$PIDFILE")
    jd_log "stopping kafka (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
}

case "${1:-}" in
fetch) fetch ;;
start) start ;;
stop) stop ;;
status) answers ;;
*) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
