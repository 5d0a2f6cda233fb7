#!/usr/bin/env bash
# Local Redis for dev and tests (Debian's redis-server, no persistence).
#
#   deploy/local/redis.sh start|stop|restart|status|logs [-f|N]
#
# - start is a no-op when something already answers PING on 127.0.0.1:$VSTREAM_REDIS_PORT
#   (ours or anybody's); otherwise starts redis-server daemonized, bound to 127.0.0.1, with its
#   dir, log and pidfile in <repo>/var/redis (git-ignored), and waits for PONG.
# - stop only stops the server this script started (pidfile), whatever VSTREAM_REDIS_PORT says.
# - status exits 0 when PING is answered, 3 when not.
#
# Environment:
#   VSTREAM_REDIS_PORT            port (default 6379)
# (Other VSTREAM_* names are reserved: vstream/config.py rejects VSTREAM_* variables it does not know.)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

REDIS_HOST="127.0.0.1"
REDIS_PORT="${VSTREAM_REDIS_PORT:-6379}"
START_TIMEOUT=20
STOP_TIMEOUT=15

VAR_DIR="$REPO_ROOT/var/redis"
PID_FILE="$VAR_DIR/redis.pid"
PORT_FILE="$VAR_DIR/redis.port"
LOG_FILE="$VAR_DIR/redis.log"
OUT_FILE="$VAR_DIR/redis.out"   # redis-server's own stdout/stderr before it daemonizes
LOCK_FILE="$VAR_DIR/.lock"

SERVICE=redis
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 {start|stop|restart|status|logs [-f|N]}" >&2
  exit 2
}

# PING over a raw socket (works without redis-cli).
# Exit: 0 PONG, 1 nothing listening, 2 answers but not with PONG (prints the reply: e.g. NOAUTH, LOADING).
ping_redis() {
  python3 - "$REDIS_HOST" "$REDIS_PORT" <<'PY'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    sock = socket.create_connection((host, port), timeout=2)
except OSError:
    sys.exit(1)
with sock:
    sock.settimeout(3)
    try:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n") and len(reply) < 512:
            chunk = sock.recv(512)
            if not chunk:
                break
            reply += chunk
    except OSError as exc:
        print(f"no reply ({exc})")
        sys.exit(2)
    if reply.startswith(b"+PONG"):
        sys.exit(0)
    print(reply.decode("utf-8", "replace").strip() or "connection closed")
    sys.exit(2)
PY
}

# PID from the pidfile if that process is alive and is a redis-server; empty otherwise.
our_pid() { pid_matching 'redis-server'; }



ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [[ "$(id -u)" != 0 ]]; then
    die "redis-server not found; install it with: apt-get install -y redis-server"
  fi
  command -v apt-get >/dev/null 2>&1 || die "redis-server not found and apt-get is not available"
  log "installing redis-server with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q redis-server >"$VAR_DIR/apt.log" 2>&1; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q >>"$VAR_DIR/apt.log" 2>&1 || true
    apt-get install -y -q redis-server >>"$VAR_DIR/apt.log" 2>&1 || {
      tail -n 20 "$VAR_DIR/apt.log" >&2
      die "apt-get install redis-server failed (log: $VAR_DIR/apt.log)"
    }
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server still not found after install"
}

cmd_start() {
  take_lock 60
  local rc=0 out pid t0 deadline
  t0=$SECONDS
  out="$(ping_redis)" || rc=$?
  pid="$(our_pid)"
  if ((rc == 0)); then
    log "already running on $REDIS_HOST:$REDIS_PORT ($(owner "$pid"))"
    return 0
  fi
  if [[ -n "$pid" && "$(cat "$PORT_FILE" 2>/dev/null)" != "$REDIS_PORT" ]]; then
    die "pid $pid (started by this script from $VAR_DIR) uses port '$(cat "$PORT_FILE" 2>/dev/null)', not $REDIS_PORT; run '$0 stop' first"
  fi
  if ((rc == 2)) && [[ -z "$pid" ]]; then
    die "port $REDIS_PORT answers but not with PONG: $out"
  fi

  if [[ -z "$pid" ]]; then
    ensure_redis_server
    rm -f "$PID_FILE"
    echo "$REDIS_PORT" >"$PORT_FILE"
    log "starting $(redis-server --version | awk '{print $1, $2, $3}') on $REDIS_HOST:$REDIS_PORT (dir $VAR_DIR)"
    if ! redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
        --dir "$VAR_DIR" --logfile "$LOG_FILE" --pidfile "$PID_FILE" \
        --save "" --appendonly no --protected-mode yes \
        9>&- >"$OUT_FILE" 2>&1; then
      cat "$OUT_FILE" >&2
      rm -f "$PORT_FILE"
      die "redis-server failed to start (see above; log: $LOG_FILE)"
    fi
  else
    log "pid $pid (started by this script) is not answering yet; waiting"
  fi

  deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    rc=0
    out="$(ping_redis)" || rc=$?
    if ((rc == 0)); then
      log "ready on $REDIS_HOST:$REDIS_PORT in $((SECONDS - t0))s ($(owner "$(our_pid)")); log: $LOG_FILE"
      return 0
    fi
    # The daemon writes its pidfile right after forking; if it is gone and the port is dead, it failed.
    if ((SECONDS - t0 >= 2)) && [[ -z "$(our_pid)" ]] && ((rc == 1)); then
      break
    fi
    sleep 0.2
  done
  err "not answering PING on $REDIS_HOST:$REDIS_PORT after $((SECONDS - t0))s${out:+ (last reply: $out)}"
  if [[ -s "$LOG_FILE" ]]; then
    echo "[redis] ---- last 40 lines of $LOG_FILE ----" >&2
    tail -n 40 "$LOG_FILE" >&2
  fi
  exit 1
}

cmd_stop() {
  take_lock 60
  local pid
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    if ping_redis >/dev/null 2>&1; then
      log "not started by this script (the server on $REDIS_HOST:$REDIS_PORT is left alone)"
    else
      log "not running"
    fi
    return 0
  fi
  stop_pid "$pid" "$STOP_TIMEOUT"
  rm -f "$PID_FILE" "$PORT_FILE"
  log "stopped"
}

cmd_status() {
  local rc=0 out pid
  out="$(ping_redis)" || rc=$?
  pid="$(our_pid)"
  if ((rc == 0)); then
    log "running on $REDIS_HOST:$REDIS_PORT ($(owner "$pid"))"
    return 0
  fi
  if [[ -n "$pid" && "$(cat "$PORT_FILE" 2>/dev/null)" != "$REDIS_PORT" ]]; then
    log "not running on $REDIS_HOST:$REDIS_PORT (this script's pid $pid uses port '$(cat "$PORT_FILE" 2>/dev/null)')"
  elif ((rc == 2)); then
    log "not ready: $REDIS_HOST:$REDIS_PORT answered '$out'${pid:+ (pid $pid)}"
  elif [[ -n "$pid" ]]; then
    log "not answering on $REDIS_HOST:$REDIS_PORT (pid $pid alive)"
  else
    log "not running ($REDIS_HOST:$REDIS_PORT not answering)"
  fi
  return 3
}

cmd_logs() {
  [[ -f "$LOG_FILE" ]] || die "no log yet at $LOG_FILE"
  case "${1:-}" in
    -f) exec tail -n 50 -F "$LOG_FILE" ;;
    "") exec tail -n 100 "$LOG_FILE" ;;
    *[!0-9]*) usage ;;
    *) exec tail -n "$1" "$LOG_FILE" ;;
  esac
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
