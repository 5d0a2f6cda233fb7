#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker + controller) for dev and tests.
#
#   deploy/local/kafka.sh start|stop|restart|status|logs [-f|N]|run-class CLASS [ARGS...]|classpath|reset
#
# - Kafka jars come from Maven Central (deploy/local/pom.xml) into
#   ${VSTREAM_CACHE:-$HOME/.cache/vstream}/kafka-<version>/libs, fetched once.
# - Data and logs live in <repo>/var/kafka/{data,logs} (git-ignored); the storage is formatted once.
# - start is a no-op when a broker already answers on the port (ours or anybody's);
#   stop only stops the broker this script started (pidfile).
# - status exits 0 when a broker answers on the port, 3 when not.
#
# Environment (only names that vstream/config.py lists as script variables may start with VSTREAM_,
# any other VSTREAM_* variable makes the application refuse to start):
#   VSTREAM_KAFKA_PORT             client listener port         (default 9092)
#   VSTREAM_KAFKA_CONTROLLER_PORT  KRaft controller port        (default 9093)
#   VSTREAM_CACHE                  cache root for the jars      (default ~/.cache/vstream)
#   KAFKA_HEAP_OPTS                JVM heap, as in Kafka's own scripts (default -Xmx512m -Xms256m)
#   KAFKA_OPTS                     extra JVM options, as in Kafka's own scripts
# The Kafka version is the kafka.version property of deploy/local/pom.xml.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
POM="$SCRIPT_DIR/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1)"
[[ -n "$KAFKA_VERSION" ]] || { echo "[kafka] ERROR: no <kafka.version> in $POM" >&2; exit 1; }

KAFKA_HOST="127.0.0.1"
KAFKA_PORT="${VSTREAM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${VSTREAM_KAFKA_CONTROLLER_PORT:-9093}"
START_TIMEOUT=90
STOP_TIMEOUT=30
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"

CACHE_ROOT="${VSTREAM_CACHE:-$HOME/.cache/vstream}"
KAFKA_CACHE="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS_DIR="$KAFKA_CACHE/libs"
LIBS_MARKER="$LIBS_DIR/.vstream-complete"

CONF_TEMPLATE="$SCRIPT_DIR/kafka.properties.tmpl"
LOG4J_SERVER="$SCRIPT_DIR/log4j2.yaml"
LOG4J_TOOLS="$SCRIPT_DIR/tools-log4j2.yaml"

VAR_DIR="$REPO_ROOT/var/kafka"
DATA_DIR="$VAR_DIR/data"
LOG_DIR="$VAR_DIR/logs"
CONF_FILE="$VAR_DIR/server.properties"
PID_FILE="$VAR_DIR/kafka.pid"
PORTS_FILE="$VAR_DIR/kafka.ports"
LOCK_FILE="$VAR_DIR/.lock"
CLUSTER_ID_FILE="$DATA_DIR/vstream-cluster-id"
SERVER_LOG="$LOG_DIR/server.log"
STDOUT_LOG="$LOG_DIR/kafka.out"
READY_INFO=""
declare -A LOG_OFFSETS=()

SERVICE=kafka
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 {start|stop|restart|status|logs [-f|N]|run-class CLASS [ARGS...]|classpath|reset}" >&2
  exit 2
}

# --------------------------------------------------------------------------- probing

# Talks the Kafka wire protocol with the stdlib only: ApiVersions v0, then a Metadata request
# (no topics) that must list at least one broker, i.e. the broker is registered and unfenced.
# Exit: 0 ready (prints "cluster=<id> brokers=<n>"), 1 nothing listening,
#       2 Kafka answers but is not ready yet, 4 something that is not Kafka answers.
probe() {
  python3 - "$KAFKA_HOST" "$KAFKA_PORT" <<'PY'
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf

def call(sock, api_key, version, corr, body):
    client = b"vstream-probe"
    msg = struct.pack(">hhih", api_key, version, corr, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 4 or size > 64 * 1024 * 1024:
        raise ValueError("bad response size")
    data = recv_exact(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise ValueError("correlation id mismatch")
    return data[4:]

try:
    sock = socket.create_connection((host, port), timeout=3)
except OSError:
    sys.exit(1)
with sock:
    sock.settimeout(5)
    try:
        resp = call(sock, 18, 0, 1, b"")  # ApiVersions v0 (always accepted)
        error, count = struct.unpack(">hi", resp[:6])
        if error not in (0, 35) or not 0 <= count < 1000:
            sys.exit(4)
        versions = {}
        for i in range(count):
            key, lo, hi = struct.unpack(">hhh", resp[6 + 6 * i: 12 + 6 * i])
            versions[key] = (lo, hi)
    except (OSError, EOFError, ValueError, struct.error):
        sys.exit(4)
    try:
        lo, hi = versions.get(3, (0, -1))  # Metadata
        usable = [v for v in range(4, 8) if lo <= v <= hi]  # same non-flexible layout in v4..v7
        if not usable:
            print("cluster=? brokers=?")
            sys.exit(0)
        # topics: empty array (brokers only); allow_auto_topic_creation: false
        resp = call(sock, 3, max(usable), 2, struct.pack(">ib", 0, 0))
        pos = 4  # throttle_time_ms
        (nbrokers,) = struct.unpack(">i", resp[pos:pos + 4]); pos += 4
        for _ in range(nbrokers):
            pos += 4  # node_id
            (hlen,) = struct.unpack(">h", resp[pos:pos + 2]); pos += 2 + hlen
            pos += 4  # port
            (rlen,) = struct.unpack(">h", resp[pos:pos + 2]); pos += 2 + max(rlen, 0)
        (clen,) = struct.unpack(">h", resp[pos:pos + 2]); pos += 2
        cluster = resp[pos:pos + clen].decode() if clen >= 0 else "?"
    except (OSError, EOFError, ValueError, struct.error):
        sys.exit(2)
    if nbrokers < 1:
        sys.exit(2)
    print(f"cluster={cluster} brokers={nbrokers}")
    sys.exit(0)
PY
}

# PID from the pidfile if that process is alive and is our broker; empty otherwise.
our_pid() { pid_matching 'kafka\.Kafka'; }


# Prints the last 40 lines that this start added to server.log and to kafka.out (where the JVM's
# own errors land, e.g. a bad option). Falls back to the plain tail when a log was rotated.
show_log_tail() {
  local f off size text errors
  for f in "$STDOUT_LOG" "$SERVER_LOG"; do
    [[ -s "$f" ]] || continue
    off="${LOG_OFFSETS[$f]:-0}"
    size="$(stat -c %s "$f")"
    ((size >= off)) || off=0
    text="$(tail -c +"$((off + 1))" "$f" | grep -v -e '^==== .* kafka.sh start' -e '^$' || true)"
    [[ -n "$text" ]] || continue
    echo "[kafka] ---- last 40 lines of $f (this start) ----" >&2
    tail -n 40 <<<"$text" >&2
    # Stack traces push the cause out of the tail: repeat the error lines, deepest cause last.
    errors="$(grep -E '(^\[[^]]*\] (ERROR|FATAL) |^Caused by: )' <<<"$text" | cut -c1-300 | awk '!seen[$0]++' | tail -n 8 || true)"
    if [[ -n "$errors" ]]; then
      echo "[kafka] ---- errors in $f ----" >&2
      echo "$errors" >&2
    fi
  done
}

# ---------------------------------------------------------------------------- setup


require_java() {
  command -v java >/dev/null 2>&1 || die "java not found (Kafka 4.x needs Java 17+: apt-get install -y openjdk-17-jre-headless)"
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | cut -d. -f1)"
  if [[ -n "$major" && "$major" -lt 17 ]]; then
    die "Java $major found; Kafka $KAFKA_VERSION needs Java 17+"
  fi
}

pom_stamp() {
  echo "kafka=$KAFKA_VERSION pom=$(sha256sum "$POM" | cut -c1-16)"
}

fetch_jars() {
  local stamp tmp
  stamp="$(pom_stamp)"
  if [[ -f "$LIBS_MARKER" && "$(cat "$LIBS_MARKER")" == "$stamp" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to fetch Kafka jars: apt-get install -y maven)"
  mkdir -p "$KAFKA_CACHE"
  (
    # Serialise fetches between clones/worktrees sharing the cache.
    if command -v flock >/dev/null 2>&1; then
      exec 8>"$KAFKA_CACHE/.fetch.lock"
      flock -w 600 8 || die "could not lock $KAFKA_CACHE/.fetch.lock"
    fi
    if [[ -f "$LIBS_MARKER" && "$(cat "$LIBS_MARKER")" == "$stamp" ]]; then
      exit 0
    fi
    log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS_DIR"
    tmp="$(mktemp -d "$KAFKA_CACHE/libs.tmp.XXXXXX")"
    if ! mvn -q -B -f "$POM" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_CACHE/mvn.log" 2>&1; then
      tail -n 40 "$KAFKA_CACHE/mvn.log" >&2
      rm -rf "$tmp"
      die "maven could not fetch Kafka $KAFKA_VERSION (log: $KAFKA_CACHE/mvn.log)"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"; }
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
    echo "$stamp" >"$LIBS_MARKER"
    log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars"
  )
}

render_config() {
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  local esc_data
  esc_data="$(printf '%s' "$DATA_DIR" | sed 's/[\\&|]/\\&/g')"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$esc_data|g" \
      "$CONF_TEMPLATE" >"$CONF_FILE.tmp"
  mv "$CONF_FILE.tmp" "$CONF_FILE"
}

# Kafka-style cluster id: base64url (no padding) of 16 random bytes, never starting with '-'.
new_cluster_id() {
  python3 -c '
import base64, os
while True:
    cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not cid.startswith("-"):
        print(cid)
        break
'
}

java_tool() {
  # java_tool CLASS [ARGS...] - run a Kafka CLI class with the cached jars, quiet logging.
  java -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS_DIR/*" "$@"
}

format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  local cid
  if [[ -s "$CLUSTER_ID_FILE" ]]; then
    cid="$(cat "$CLUSTER_ID_FILE")"
  else
    cid="$(new_cluster_id)"
    echo "$cid" >"$CLUSTER_ID_FILE"
  fi
  log "formatting KRaft storage in $DATA_DIR (cluster id $cid)"
  if ! java_tool kafka.tools.StorageTool format --ignore-formatted -t "$cid" -c "$CONF_FILE" \
      >"$LOG_DIR/format.log" 2>&1; then
    cat "$LOG_DIR/format.log" >&2
    die "storage format failed"
  fi
}

# Waits until the broker answers; $1 = pid to watch (may be empty). Returns non-zero on failure.
wait_ready() {
  local pid="$1" deadline out rc
  deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    rc=0
    out="$(probe)" || rc=$?
    if ((rc == 0)); then
      READY_INFO="$out"
      return 0
    fi
    if ((rc == 4)); then
      err "something that is not Kafka answers on $KAFKA_HOST:$KAFKA_PORT"
      return 1
    fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      err "broker process $pid exited during startup"
      return 1
    fi
    sleep 0.5
  done
  err "broker not ready after ${START_TIMEOUT}s"
  return 1
}

# --------------------------------------------------------------------------- commands

cmd_start() {
  take_lock 180
  local rc=0 out pid t0
  t0=$SECONDS
  out="$(probe)" || rc=$?
  pid="$(our_pid)"
  if ((rc == 0)); then
    log "already running on $KAFKA_HOST:$KAFKA_PORT ($(owner "$pid"), $out)"
    return 0
  fi
  if ((rc == 4)); then
    die "port $KAFKA_PORT is taken by something that is not Kafka"
  fi
  if [[ -n "$pid" && "$(cat "$PORTS_FILE" 2>/dev/null)" != "$KAFKA_PORT $CONTROLLER_PORT" ]]; then
    die "pid $pid (started by this script from $VAR_DIR) uses ports '$(cat "$PORTS_FILE" 2>/dev/null)', not '$KAFKA_PORT $CONTROLLER_PORT'; run '$0 stop' first"
  fi
  if [[ -n "$pid" || $rc == 2 ]]; then
    log "a broker is already starting ($(owner "$pid")); waiting up to ${START_TIMEOUT}s"
    READY_INFO=""
    if wait_ready "$pid"; then
      log "ready on $KAFKA_HOST:$KAFKA_PORT ($READY_INFO)"
      return 0
    fi
    show_log_tail
    exit 1
  fi

  require_java
  fetch_jars
  render_config
  format_storage
  rm -f "$PID_FILE"

  log "starting Kafka $KAFKA_VERSION on $KAFKA_HOST:$KAFKA_PORT (controller $CONTROLLER_PORT, data $DATA_DIR)"
  local f
  for f in "$STDOUT_LOG" "$SERVER_LOG"; do
    LOG_OFFSETS[$f]="$(stat -c %s "$f" 2>/dev/null || echo 0)"
  done
  {
    echo
    echo "==== $(date -Is) kafka.sh start (Kafka $KAFKA_VERSION) ===="
  } >>"$STDOUT_LOG"
  # shellcheck disable=SC2086  # HEAP_OPTS / KAFKA_OPTS are intentionally word-split
  setsid nohup java $HEAP_OPTS -server \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true \
    -Xlog:gc*:file="$LOG_DIR/kafka-gc.log":time,tags:filecount=2,filesize=10M \
    -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$LOG4J_SERVER" \
    ${KAFKA_OPTS:-} \
    -cp "$LIBS_DIR/*" kafka.Kafka "$CONF_FILE" \
    >>"$STDOUT_LOG" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "$KAFKA_PORT $CONTROLLER_PORT" >"$PORTS_FILE"

  READY_INFO=""
  if wait_ready "$pid"; then
    log "ready on $KAFKA_HOST:$KAFKA_PORT in $((SECONDS - t0))s (pid $pid, $READY_INFO); logs: $LOG_DIR"
    return 0
  fi
  show_log_tail
  if kill -0 "$pid" 2>/dev/null; then
    err "pid $pid is still running; inspect $SERVER_LOG or run '$0 stop'"
  else
    rm -f "$PID_FILE" "$PORTS_FILE"
  fi
  exit 1
}

cmd_stop() {
  take_lock 180
  local pid
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    if probe >/dev/null 2>&1; then
      log "not started by this script (a broker on $KAFKA_HOST:$KAFKA_PORT is left alone)"
    else
      log "not running"
    fi
    return 0
  fi
  stop_pid "$pid" "$STOP_TIMEOUT"
  rm -f "$PID_FILE" "$PORTS_FILE"
  log "stopped"
}

cmd_status() {
  local rc=0 out pid
  out="$(probe)" || rc=$?
  pid="$(our_pid)"
  if ((rc == 0)); then
    log "running on $KAFKA_HOST:$KAFKA_PORT ($(owner "$pid"), $out)"
    return 0
  fi
  if ((rc == 2)); then
    log "starting: Kafka answers on $KAFKA_HOST:$KAFKA_PORT but is not ready${pid:+ (pid $pid)}"
  elif ((rc == 4)); then
    log "not running: $KAFKA_HOST:$KAFKA_PORT is taken by something that is not Kafka"
  elif [[ -n "$pid" && "$(cat "$PORTS_FILE" 2>/dev/null)" != "$KAFKA_PORT $CONTROLLER_PORT" ]]; then
    log "not running on $KAFKA_HOST:$KAFKA_PORT (this script's pid $pid uses ports '$(cat "$PORTS_FILE" 2>/dev/null)')"
  elif [[ -n "$pid" ]]; then
    log "not answering on $KAFKA_HOST:$KAFKA_PORT (pid $pid alive, still starting?)"
  else
    log "not running ($KAFKA_HOST:$KAFKA_PORT not answering)"
  fi
  return 3
}

cmd_logs() {
  [[ -f "$SERVER_LOG" ]] || die "no log yet at $SERVER_LOG"
  case "${1:-}" in
    -f) exec tail -n 50 -F "$SERVER_LOG" ;;
    "") exec tail -n 100 "$SERVER_LOG" ;;
    *[!0-9]*) usage ;;
    *) exec tail -n "$1" "$SERVER_LOG" ;;
  esac
}

cmd_run_class() {
  (($# >= 1)) || usage
  require_java
  fetch_jars
  java_tool "$@"
}

cmd_reset() {
  cmd_stop
  log "removing $DATA_DIR (topics, offsets, cluster id)"
  rm -rf "$DATA_DIR"
}

main() {
  local cmd="${1:-}"
  (($# > 0)) && shift
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) (cmd_stop) && cmd_start ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    run-class) cmd_run_class "$@" ;;
    classpath) require_java; fetch_jars >&2; echo "$LIBS_DIR/*" ;;
    reset) cmd_reset ;;
    *) usage ;;
  esac
}

main "$@"
