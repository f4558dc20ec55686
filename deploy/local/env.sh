# Sourced by the deploy/local scripts: where the local services live and
# which loopback ports they use (non-default, so they never collide with
# anything else on the machine). Every value can be overridden from the
# environment.
JD_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
JD_DEPLOY_DIR="$JD_REPO/deploy/local"
JD_LOCAL_DIR=${JD_LOCAL_DIR:-/var/tmp/journeyd-local}
JD_KAFKA_PORT=${JD_KAFKA_PORT:-19092}
JD_KAFKA_CONTROLLER_PORT=${JD_KAFKA_CONTROLLER_PORT:-19093}
JD_REDIS_PORT=${JD_REDIS_PORT:-16379}
JD_REDIS_SOCKET=${JD_REDIS_SOCKET:-$JD_LOCAL_DIR/redis/redis.sock}
JD_KAFKA_BROKERS="127.0.0.1:$JD_KAFKA_PORT"
export JD_REPO JD_DEPLOY_DIR JD_LOCAL_DIR JD_KAFKA_PORT JD_KAFKA_CONTROLLER_PORT \
       JD_REDIS_PORT JD_REDIS_SOCKET JD_KAFKA_BROKERS

jd_log() { printf '[deploy] %s\n' "$*" >&2; }
jd_die() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

# jd_wait SECONDS DESCRIPTION COMMAND...: retry COMMAND until it succeeds.
jd_wait() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    jd_die "$what did not come up within ${secs}s"
}
