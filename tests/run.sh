#!/usr/bin/env bash
# The whole test suite, from a fresh machine: install what is missing, start
# local Redis and Kafka, build, run every suite (unit, integration, e2e) under
# ASan+UBSan, then again in the release build. Exits non-zero on any failure;
# the last lines are ctest's summary.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. deploy/local/env.sh

./deploy/local/up.sh || { echo "tests/run.sh: could not start the local services" >&2; exit 1; }
export JD_KAFKA_BROKERS JD_REDIS_PORT JD_REDIS_SOCKET JD_DEPLOY_DIR

build() { # build DIR [cmake args...]
    local dir=$1
    shift
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null &&
        cmake --build "$dir" -j2
}

echo "== build (ASan+UBSan) and every suite under the sanitizers"
build build-asan -DJD_SANITIZE=ON || exit 1
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure) ||
    { echo "tests/run.sh: sanitizer run failed" >&2; exit 1; }

echo "== build (release) and every suite: unit, integration, e2e"
build build || exit 1
cd build && ctest --output-on-failure
