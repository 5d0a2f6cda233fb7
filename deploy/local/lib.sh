# Shared by kafka.sh and redis.sh (sourced; each sets SERVICE, PID_FILE, VAR_DIR and LOCK_FILE first).

log() { echo "[$SERVICE] $*"; }
err() { echo "[$SERVICE] ERROR: $*" >&2; }
die() { err "$*"; exit 1; }

# stop_pid PID TIMEOUT_S: SIGTERM, wait up to TIMEOUT_S, then SIGKILL; returns once the process is gone.
stop_pid() {
  local pid=$1 timeout=$2 deadline
  log "stopping pid $pid (SIGTERM, up to ${timeout}s)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after ${timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
}

# pid_matching PATTERN: the pid in PID_FILE if that process is alive and its command line matches
# PATTERN (so a recycled pid is never taken for our server); empty otherwise.
pid_matching() {
  local pid
  [[ -f "$PID_FILE" ]] || return 0
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$1"; then
    echo "$pid"
  fi
}

owner() {
  if [[ -n "$1" ]]; then echo "pid $1"; else echo "not started by this script"; fi
}

# take_lock WAIT_S: one start/stop at a time per server (flock on LOCK_FILE, held until the script exits).
take_lock() {
  mkdir -p "$VAR_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK_FILE"
    flock -w "$1" 9 || die "could not take $LOCK_FILE (another $(basename "$0") still running?)"
  fi
}
