#!/usr/bin/env bash
# Local S3-compatible object store (s3proxy, Apache-2.0, filesystem backend) for the claim-check blobs.
#
#   deploy/local/s3.sh start|stop|restart|status|logs [-f|N]
#
# - The s3proxy jar-with-dependencies comes from Maven Central (org.gaul:s3proxy, version below) into
#   ${VSTREAM_CACHE:-$HOME/.cache/vstream}/s3proxy-<version>/, fetched once with mvn.
# - Objects live under <repo>/var/s3/data/<bucket>/ (git-ignored); the bucket below is created on start.
# - start is a no-op when an S3 endpoint already answers on the port (ours or anybody's);
#   stop only stops the server this script started (pidfile).
# - status exits 0 when the endpoint answers, 3 when not.
# - s3proxy does not implement bucket lifecycle rules: vstream's blob store expires old objects itself.
#
# Environment (only names vstream/config.py lists as script variables may start with VSTREAM_):
#   VSTREAM_S3_PORT     port                          (default 8333)
#   VSTREAM_S3_BUCKET   bucket created on start       (default vstream)
#   VSTREAM_CACHE       cache root for the jar        (default ~/.cache/vstream)
# Credentials are fixed for local use: access key "vstream", secret "vstream-secret".
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

S3PROXY_VERSION="4.1.0"
S3_HOST="127.0.0.1"
S3_PORT="${VSTREAM_S3_PORT:-8333}"
S3_BUCKET="${VSTREAM_S3_BUCKET:-vstream}"
ACCESS_KEY="vstream"
SECRET_KEY="vstream-secret"
START_TIMEOUT=60
STOP_TIMEOUT=15

CACHE_ROOT="${VSTREAM_CACHE:-$HOME/.cache/vstream}"
JAR_DIR="$CACHE_ROOT/s3proxy-$S3PROXY_VERSION"
JAR="$JAR_DIR/s3proxy-$S3PROXY_VERSION-jar-with-dependencies.jar"

VAR_DIR="$REPO_ROOT/var/s3"
DATA_DIR="$VAR_DIR/data"
CONF_FILE="$VAR_DIR/s3proxy.conf"
PID_FILE="$VAR_DIR/s3proxy.pid"
PORT_FILE="$VAR_DIR/s3proxy.port"
LOG_FILE="$VAR_DIR/s3proxy.log"
LOCK_FILE="$VAR_DIR/.lock"

SERVICE=s3
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 {start|stop|restart|status|logs [-f|N]}" >&2
  exit 2
}

# Anonymous GET / over a raw socket. Exit: 0 an S3 endpoint answers (an XML error such as
# AccessDenied counts: it proves S3 is there), 1 nothing listening, 4 something else answers.
probe() {
  python3 - "$S3_HOST" "$S3_PORT" <<'PY'
import http.client, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    conn.request("GET", "/")
    resp = conn.getresponse()
    body = resp.read(4096)
except ConnectionRefusedError:
    sys.exit(1)
except OSError:
    sys.exit(1)
except http.client.HTTPException:
    sys.exit(4)
sys.exit(0 if b"<?xml" in body or b"ListAllMyBucketsResult" in body else 4)
PY
}

our_pid() { pid_matching 's3proxy'; }

require_java() {
  command -v java >/dev/null 2>&1 || die "java not found (s3proxy needs Java 17+: apt-get install -y openjdk-17-jre-headless)"
}

fetch_jar() {
  [[ -s "$JAR" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to fetch s3proxy: apt-get install -y maven)"
  mkdir -p "$JAR_DIR"
  (
    if command -v flock >/dev/null 2>&1; then
      exec 8>"$JAR_DIR/.fetch.lock"
      flock -w 600 8 || die "could not lock $JAR_DIR/.fetch.lock"
    fi
    [[ -s "$JAR" ]] && exit 0
    log "fetching org.gaul:s3proxy:$S3PROXY_VERSION (jar-with-dependencies) from Maven Central"
    local tmp
    tmp="$(mktemp -d "$JAR_DIR/tmp.XXXXXX")"
    if ! mvn -q -B dependency:copy \
        -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" \
        -DoutputDirectory="$tmp" >"$JAR_DIR/mvn.log" 2>&1; then
      tail -n 40 "$JAR_DIR/mvn.log" >&2
      rm -rf "$tmp"
      die "maven could not fetch s3proxy $S3PROXY_VERSION (log: $JAR_DIR/mvn.log)"
    fi
    mv "$tmp/$(basename "$JAR")" "$JAR"
    rm -rf "$tmp"
  )
}

render_config() {
  mkdir -p "$DATA_DIR/$S3_BUCKET"  # filesystem backend: a bucket is a directory under the basedir
  cat >"$CONF_FILE.tmp" <<CONF
s3proxy.endpoint=http://$S3_HOST:$S3_PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$ACCESS_KEY
s3proxy.credential=$SECRET_KEY
jclouds.provider=filesystem-nio2
jclouds.identity=$ACCESS_KEY
jclouds.credential=$SECRET_KEY
jclouds.filesystem.basedir=$DATA_DIR
CONF
  mv "$CONF_FILE.tmp" "$CONF_FILE"
}

wait_ready() {
  local pid="$1" deadline rc
  deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    rc=0
    probe || rc=$?
    ((rc == 0)) && return 0
    ((rc == 4)) && { err "something that is not S3 answers on $S3_HOST:$S3_PORT"; return 1; }
    if ! kill -0 "$pid" 2>/dev/null; then
      err "s3proxy process $pid exited during startup"
      return 1
    fi
    sleep 0.3
  done
  err "s3proxy not ready after ${START_TIMEOUT}s"
  return 1
}

cmd_start() {
  take_lock 120
  local rc=0 pid t0=$SECONDS
  probe || rc=$?
  pid="$(our_pid)"
  if ((rc == 0)); then
    mkdir -p "$DATA_DIR/$S3_BUCKET"
    log "already running on $S3_HOST:$S3_PORT ($(owner "$pid"))"
    return 0
  fi
  ((rc == 4)) && die "port $S3_PORT is taken by something that is not S3"
  [[ -z "$pid" ]] || die "pid $pid (s3proxy started from $VAR_DIR) does not answer on $S3_PORT; run '$0 stop' first"
  require_java
  fetch_jar
  render_config
  log "starting s3proxy $S3PROXY_VERSION on $S3_HOST:$S3_PORT (bucket $S3_BUCKET, data $DATA_DIR)"
  echo "==== $(date -Is) s3.sh start ====" >>"$LOG_FILE"
  setsid nohup java -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -jar "$JAR" --properties "$CONF_FILE" >>"$LOG_FILE" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "$S3_PORT" >"$PORT_FILE"
  if wait_ready "$pid"; then
    log "ready on $S3_HOST:$S3_PORT in $((SECONDS - t0))s (pid $pid); logs: $LOG_FILE"
    return 0
  fi
  tail -n 30 "$LOG_FILE" >&2
  kill -0 "$pid" 2>/dev/null || rm -f "$PID_FILE" "$PORT_FILE"
  exit 1
}

cmd_stop() {
  take_lock 120
  local pid
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    if probe >/dev/null 2>&1; then
      log "not started by this script (the endpoint on $S3_HOST:$S3_PORT is left alone)"
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
  local rc=0 pid
  probe || rc=$?
  pid="$(our_pid)"
  if ((rc == 0)); then
    log "running on $S3_HOST:$S3_PORT ($(owner "$pid"))"
    return 0
  fi
  if ((rc == 4)); then
    log "not running: $S3_HOST:$S3_PORT is taken by something that is not S3"
  else
    log "not running ($S3_HOST:$S3_PORT not answering${pid:+; pid $pid alive})"
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
