#!/usr/bin/env bash
# Our own redis-server on 127.0.0.1:$JD_REDIS_PORT (and a Unix socket), for
# local runs and tests; separate from any system Redis.
#   redis.sh start | stop | status
set -euo pipefail
. "$(dirname "$0")/env.sh"

DIR="$JD_LOCAL_DIR/redis"
PIDFILE="$DIR/redis.pid"

answers() { redis-cli -p "$JD_REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start() {
    if answers; then
        jd_log "redis already running on 127.0.0.1:$JD_REDIS_PORT"
        return 0
    fi
    mkdir -p "$DIR"
    jd_log "starting redis on 127.0.0.1:$JD_REDIS_PORT"
    redis-server --port "$JD_REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
        --daemonize yes --pidfile "$PIDFILE" --dir "$DIR" --logfile "$DIR/redis.log" \
        --unixsocket "$JD_REDIS_SOCKET" --unixsocketperm 770 \
        --save "" --appendonly yes --appendfsync everysec
    jd_wait 30 "redis on port $JD_REDIS_PORT" answers
}

stop() {
    answers || return 0
    jd_log "stopping redis"
    redis-cli -p "$JD_REDIS_PORT" shutdown >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 100; i++)); do answers || return 0; sleep 0.1; done
    [ -f "$PIDFILE" ] && kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) answers ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
