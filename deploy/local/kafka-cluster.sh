#!/usr/bin/env bash
# Local 3-node Apache Kafka KRaft cluster (each node a combined broker + controller) on one host, for
# the replication tests and bench/scale.py. Uses the same cached jars as kafka.sh; the single broker
# that kafka.sh runs on 9092 is not touched.
#
#   deploy/local/kafka-cluster.sh start [N]|stop [N]|kill N|status|bootstrap|logs N
#
# - start: every node (or node N only: a restart after kill); waits until each answers and sees all
#   three brokers. A no-op for nodes that already answer.
# - stop: SIGTERM (then SIGKILL) every node this script started, or node N.
# - kill N: SIGKILL node N, as a crash would (tests).
# - status: exit 0 when all three nodes answer and see three brokers, 3 otherwise.
# - bootstrap: prints the client bootstrap list.
# Data and logs: <repo>/var/kafka-cluster/N/{data,logs}; storage formatted once with one cluster id.
#
# Environment (only names vstream/config.py lists as script variables may start with VSTREAM_):
#   VSTREAM_KAFKA_CLUSTER_PORTS  "B1 B2 B3 C1 C2 C3" client and controller ports
#                                (default "19092 19093 19094 19192 19193 19194")
#   VSTREAM_CACHE                cache root for the jars (default ~/.cache/vstream)
#   KAFKA_HEAP_OPTS              JVM heap per node (default -Xmx512m -Xms128m)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
read -r -a PORTS <<<"${VSTREAM_KAFKA_CLUSTER_PORTS:-19092 19093 19094 19192 19193 19194}"
((${#PORTS[@]} == 6)) || { echo "[kafka-cluster] ERROR: VSTREAM_KAFKA_CLUSTER_PORTS needs 6 ports" >&2; exit 2; }
NODES=(1 2 3)
HOST=127.0.0.1
START_TIMEOUT=150
STOP_TIMEOUT=30
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms128m}"
TEMPLATE="$SCRIPT_DIR/kafka-cluster.properties.tmpl"
LOG4J_SERVER="$SCRIPT_DIR/log4j2.yaml"
LOG4J_TOOLS="$SCRIPT_DIR/tools-log4j2.yaml"

VAR_DIR="$REPO_ROOT/var/kafka-cluster"
LOCK_FILE="$VAR_DIR/.lock"
CLUSTER_ID_FILE="$VAR_DIR/cluster-id"
PID_FILE=""  # per node, set by node_vars

SERVICE=kafka-cluster
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 {start [N]|stop [N]|kill N|status|bootstrap|logs N}" >&2
  exit 2
}

broker_port() { echo "${PORTS[$(($1 - 1))]}"; }
controller_port() { echo "${PORTS[$(($1 + 2))]}"; }
node_dir() { echo "$VAR_DIR/$1"; }
node_vars() { PID_FILE="$(node_dir "$1")/kafka.pid"; }
node_pid() { node_vars "$1"; pid_matching 'kafka\.Kafka'; }
bootstrap() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$HOST:$(broker_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# 0 when node N answers and its metadata lists all three brokers (kafka.sh's wire-protocol probe).
node_ready() {
  local out
  out="$(VSTREAM_KAFKA_PORT="$(broker_port "$1")" "$SCRIPT_DIR/kafka.sh" status 2>/dev/null)" || return 1
  [[ "$out" == *"brokers=${#NODES[@]})"* ]]
}

node_answers() { VSTREAM_KAFKA_PORT="$(broker_port "$1")" "$SCRIPT_DIR/kafka.sh" status >/dev/null 2>&1; }

render_config() {
  local n=$1 dir voters="" m
  dir="$(node_dir "$n")"
  mkdir -p "$dir/data" "$dir/logs"
  for m in "${NODES[@]}"; do voters+="${voters:+,}$m@$HOST:$(controller_port "$m")"; done
  sed -e "s|@NODE_ID@|$n|g" -e "s|@VOTERS@|$voters|g" \
      -e "s|@KAFKA_PORT@|$(broker_port "$n")|g" -e "s|@CONTROLLER_PORT@|$(controller_port "$n")|g" \
      -e "s|@DATA_DIR@|$dir/data|g" "$TEMPLATE" >"$dir/server.properties"
}

format_storage() {
  local n=$1 dir libs=$2
  dir="$(node_dir "$n")"
  [[ -f "$dir/data/meta.properties" ]] && return 0
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    python3 -c 'import base64, os; print(base64.urlsafe_b64encode(b"\x01" + os.urandom(15)).decode().rstrip("="))' \
      >"$CLUSTER_ID_FILE"
  fi
  if ! java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$libs" \
      kafka.tools.StorageTool format --ignore-formatted -t "$(cat "$CLUSTER_ID_FILE")" \
      -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1; then
    cat "$dir/logs/format.log" >&2
    die "storage format of node $n failed"
  fi
}

launch_node() {
  local n=$1 libs=$2 dir pid
  dir="$(node_dir "$n")"
  render_config "$n"
  format_storage "$n" "$libs"
  echo "==== $(date -Is) kafka-cluster.sh start node $n ====" >>"$dir/logs/kafka.out"
  # shellcheck disable=SC2086  # HEAP_OPTS / KAFKA_OPTS are intentionally word-split
  setsid nohup java $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$LOG4J_SERVER" ${KAFKA_OPTS:-} \
    -cp "$libs" kafka.Kafka "$dir/server.properties" >>"$dir/logs/kafka.out" 2>&1 </dev/null 9>&- &
  pid=$!
  node_vars "$n"
  echo "$pid" >"$PID_FILE"
  log "node $n starting (pid $pid, client $(broker_port "$n"), controller $(controller_port "$n"))"
}

cmd_start() {
  take_lock 300
  local targets=("$@") n libs deadline t0=$SECONDS pending
  ((${#targets[@]})) || targets=("${NODES[@]}")
  libs="$("$SCRIPT_DIR/kafka.sh" classpath)"
  for n in "${targets[@]}"; do
    if node_answers "$n"; then
      log "node $n already answers on $HOST:$(broker_port "$n")"
    elif [[ -n "$(node_pid "$n")" ]]; then
      log "node $n already starting (pid $(node_pid "$n"))"
    else
      launch_node "$n" "$libs"
    fi
  done
  deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    pending=()
    for n in "${NODES[@]}"; do node_ready "$n" || pending+=("$n"); done
    if ((${#pending[@]} == 0)); then
      log "ready in $((SECONDS - t0))s: $(bootstrap)"
      return 0
    fi
    for n in "${targets[@]}"; do
      [[ -n "$(node_pid "$n")" ]] || node_answers "$n" || { tail -n 30 "$(node_dir "$n")/logs/kafka.out" >&2; die "node $n exited during startup"; }
    done
    sleep 1
  done
  for n in "${pending[@]}"; do tail -n 20 "$(node_dir "$n")/logs/server.log" >&2 || true; done
  die "nodes ${pending[*]} not ready after ${START_TIMEOUT}s"
}

cmd_stop() {
  take_lock 300
  local targets=("$@") n pid
  ((${#targets[@]})) || targets=("${NODES[@]}")
  for n in "${targets[@]}"; do
    pid="$(node_pid "$n")"
    if [[ -n "$pid" ]]; then
      stop_pid "$pid" "$STOP_TIMEOUT" &
    else
      log "node $n not running (or not started by this script)"
    fi
  done
  wait
  for n in "${targets[@]}"; do node_vars "$n"; rm -f "$PID_FILE"; done
  log "stopped ${targets[*]}"
}

cmd_kill() {
  (($# == 1)) || usage
  local pid
  pid="$(node_pid "$1")"
  [[ -n "$pid" ]] || die "node $1 is not running (or not started by this script)"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$PID_FILE"
  log "node $1 killed (pid $pid, SIGKILL)"
}

cmd_status() {
  local n rc=0
  for n in "${NODES[@]}"; do
    if node_ready "$n"; then
      log "node $n running on $HOST:$(broker_port "$n") (pid $(node_pid "$n"))"
    else
      log "node $n not ready on $HOST:$(broker_port "$n")"
      rc=3
    fi
  done
  return "$rc"
}

main() {
  local cmd="${1:-}"
  (($# > 0)) && shift
  for n in "$@"; do [[ " ${NODES[*]} " == *" $n "* ]] || die "no node $n (nodes: ${NODES[*]})"; done
  case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    status) cmd_status ;;
    bootstrap) bootstrap ;;
    logs) (($# == 1)) || usage; exec tail -n 100 "$(node_dir "$1")/logs/server.log" ;;
    *) usage ;;
  esac
}

main "$@"
