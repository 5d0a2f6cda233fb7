#!/usr/bin/env bash
# Local 3-master Redis Cluster for tests of the cluster client (Debian's redis-server, no replicas,
# no persistence). The single server of redis.sh (port 6379) is a different server and is left alone.
#
#   deploy/local/redis-cluster.sh start|stop|restart|status|logs [N]
#
# - start: starts any node that is not running (cluster-enabled, one port each, dir/log/pidfile/nodes.conf
#   in <repo>/var/redis-cluster/<port>), then, if the nodes do not form a cluster with every slot served
#   yet, creates it (`redis-cli --cluster create ... --cluster-yes`) and waits for `cluster_state:ok`.
#   A no-op when the cluster already answers with state ok.
# - stop: stops only the nodes this script started (pidfiles) and removes their cluster state, so the
#   next start creates a fresh cluster (the data is test data).
# - status: exits 0 when every node answers and the cluster state is ok, 3 otherwise.
#
# Environment:
#   VSTREAM_REDIS_CLUSTER_PORTS   space-separated node ports (default "7001 7002 7003"; at least 3)
# (Other VSTREAM_* names are reserved: vstream/config.py rejects VSTREAM_* variables it does not know.)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

HOST="127.0.0.1"
read -r -a PORTS <<<"${VSTREAM_REDIS_CLUSTER_PORTS:-7001 7002 7003}"
START_TIMEOUT=30
STOP_TIMEOUT=15

VAR_DIR="$REPO_ROOT/var/redis-cluster"
LOCK_FILE="$VAR_DIR/.lock"
PID_FILE=""  # set per node by node_paths (lib.sh's pid_matching reads it)

SERVICE=redis-cluster
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 {start|stop|restart|status|logs [N]}" >&2
  exit 2
}

node_paths() {
  NODE_DIR="$VAR_DIR/$1"
  PID_FILE="$NODE_DIR/redis.pid"
  NODE_LOG="$NODE_DIR/redis.log"
}

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}" 2>/dev/null; }

pings() { [[ "$(cli "$1" PING)" == PONG ]]; }

# Healthy: every node says the cluster is ok and knows all the others (a node restarted alone knows itself).
cluster_ok() {
  local port info
  for port in "${PORTS[@]}"; do
    info="$(cli "$port" CLUSTER INFO | tr -d '\r')"
    grep -qx 'cluster_state:ok' <<<"$info" || return 1
    grep -qx "cluster_known_nodes:${#PORTS[@]}" <<<"$info" || return 1
  done
}

# Every node knows the others: a cluster already exists (possibly still converging).
cluster_formed() {
  local known
  known="$(cli "${PORTS[0]}" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')"
  [[ "${known:-0}" -ge "${#PORTS[@]}" ]]
}

start_node() {
  local port=$1 pid
  node_paths "$port"
  mkdir -p "$NODE_DIR"
  pings "$port" && return 0
  pid="$(pid_matching 'redis-server')"
  [[ -n "$pid" ]] && return 0  # ours, still loading: waited for below
  log "starting node on $HOST:$port (dir $NODE_DIR)"
  # nodes.conf of a node that is not running describes a cluster that no longer exists: start clean
  rm -f "$NODE_DIR/nodes.conf" "$PID_FILE"
  redis-server --daemonize yes --bind "$HOST" --port "$port" --dir "$NODE_DIR" \
    --logfile "$NODE_LOG" --pidfile "$PID_FILE" --save "" --appendonly no --protected-mode yes \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
    9>&- >"$NODE_DIR/redis.out" 2>&1 || { cat "$NODE_DIR/redis.out" >&2; die "node $port failed to start"; }
}

poll() {  # poll SECONDS COMMAND...: until COMMAND succeeds (0) or SECONDS pass (1)
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

wait_for() {  # wait_for WHAT COMMAND...: poll COMMAND for START_TIMEOUT seconds or die
  local what=$1
  shift
  poll "$START_TIMEOUT" "$@" || die "$what not reached after ${START_TIMEOUT}s (logs: $VAR_DIR/<port>/redis.log)"
}

# A node restarted on its own (crash, reboot) comes back empty and outside the cluster: the data is test
# data, so every node is emptied and the cluster created again.
reset_all() {
  local port
  log "the nodes do not form a healthy cluster: resetting all of them"
  for port in "${PORTS[@]}"; do
    cli "$port" FLUSHALL >/dev/null || true
    cli "$port" CLUSTER RESET HARD >/dev/null || die "CLUSTER RESET on port $port failed"
  done
}

all_ping() { local p; for p in "${PORTS[@]}"; do pings "$p" || return 1; done; }

cmd_start() {
  take_lock 60
  local t0=$SECONDS port
  ((${#PORTS[@]} >= 3)) || die "a cluster needs at least 3 masters (VSTREAM_REDIS_CLUSTER_PORTS)"
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found (deploy/local/bootstrap.sh installs it)"
  if all_ping && cluster_ok; then
    log "already running on ports ${PORTS[*]}"
    return 0
  fi
  for port in "${PORTS[@]}"; do start_node "$port"; done
  wait_for "PONG from every node" all_ping
  if cluster_formed && ! poll 10 cluster_ok; then
    reset_all
  fi
  if ! cluster_formed; then
    local addrs=()
    for port in "${PORTS[@]}"; do addrs+=("$HOST:$port"); done
    log "creating the cluster (${#PORTS[@]} masters, no replicas)"
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$VAR_DIR/create.log" 2>&1 ||
      { cat "$VAR_DIR/create.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  wait_for "cluster_state:ok" cluster_ok
  log "ready on ports ${PORTS[*]} in $((SECONDS - t0))s; logs: $VAR_DIR/<port>/redis.log"
}

cmd_stop() {
  take_lock 60
  local port pid stopped=0
  for port in "${PORTS[@]}"; do
    node_paths "$port"
    pid="$(pid_matching 'redis-server')"
    if [[ -n "$pid" ]]; then
      stop_pid "$pid" "$STOP_TIMEOUT"
      stopped=$((stopped + 1))
    elif pings "$port"; then
      log "node on port $port not started by this script: left alone"
    fi
    rm -f "$PID_FILE" "$NODE_DIR/nodes.conf" 2>/dev/null || true
  done
  log "stopped $stopped node(s)"
}

cmd_status() {
  local port down=()
  for port in "${PORTS[@]}"; do pings "$port" || down+=("$port"); done
  if ((${#down[@]})); then
    log "not running (no PONG on port(s) ${down[*]})"
    return 3
  fi
  if ! cluster_ok; then
    log "nodes answer but the cluster state is not ok"
    return 3
  fi
  log "running on ports ${PORTS[*]} (cluster_state:ok)"
}

cmd_logs() {
  local n=${1:-50}
  [[ "$n" =~ ^[0-9]+$ ]] || usage
  local port
  for port in "${PORTS[@]}"; do
    node_paths "$port"
    [[ -f "$NODE_LOG" ]] && { echo "---- $NODE_LOG"; tail -n "$n" "$NODE_LOG"; }
  done
  return 0
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
    *) usage ;;
  esac
}

main "$@"
