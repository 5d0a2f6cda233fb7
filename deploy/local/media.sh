#!/usr/bin/env bash
# Local live-media servers for the live-source tests (all Debian packages, no downloads):
#   - GStreamer's RTSP server (gir1.2-gst-rtsp-server-1.0 + python3-gi) on 127.0.0.1:8554,
#     mount /camN fed by H.264 RTP sent to UDP 127.0.0.1:(5010+N), N = 0..9 (deploy/local/media/rtsp_server.py)
#   - nginx with libnginx-mod-rtmp: RTMP on 127.0.0.1:1935 (application "live"), and HTTP on
#     127.0.0.1:8088 serving var/media/hls, where ffmpeg's hls muxer writes growing playlists
# Publishers (ffmpeg, the "cameras") are started by the tests themselves.
#
#   deploy/local/media.sh start|stop|restart|restart-rtsp|restart-nginx|status|logs
#
# Data, config, pids and logs live in <repo>/var/media (git-ignored).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

RTSP_PORT=8554
RTSP_UDP_BASE=5010
RTSP_MOUNTS=10
RTMP_PORT=1935
HLS_PORT=8088
START_TIMEOUT=20

VAR_DIR="$REPO_ROOT/var/media"
PID_FILE="$VAR_DIR/rtsp.pid"
NGINX_PID="$VAR_DIR/nginx.pid"
NGINX_CONF="$VAR_DIR/nginx.conf"
RTSP_LOG="$VAR_DIR/rtsp.log"
LOCK_FILE="$VAR_DIR/.lock"

SERVICE=media
# shellcheck source=deploy/local/lib.sh
source "$SCRIPT_DIR/lib.sh"

usage() {
  echo "usage: $0 {start|stop|restart|restart-rtsp|restart-nginx|status|logs}" >&2
  exit 2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

nginx_pid() {
  local pid
  [[ -f "$NGINX_PID" ]] || return 0
  pid="$(tr -dc '0-9' <"$NGINX_PID")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q nginx "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  fi
}

ensure_packages() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx-light)
  [[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]] || need+=(libnginx-mod-rtmp)
  /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null \
    || need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
  ((${#need[@]})) || return 0
  [[ "$(id -u)" == 0 ]] || die "missing packages; install them with: apt-get install -y ${need[*]}"
  log "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >"$VAR_DIR/apt.log" 2>&1 \
    || { apt-get update -q >>"$VAR_DIR/apt.log" 2>&1 && apt-get install -y -q "${need[@]}" >>"$VAR_DIR/apt.log" 2>&1; } \
    || { tail -n 20 "$VAR_DIR/apt.log" >&2; die "apt-get install failed (log: $VAR_DIR/apt.log)"; }
}

start_nginx() {
  if [[ -n "$(nginx_pid)" ]]; then
    log "nginx already running (pid $(nginx_pid))"
    return 0
  fi
  port_open "$RTMP_PORT" && die "port $RTMP_PORT is taken by another process"
  mkdir -p "$VAR_DIR/hls" "$VAR_DIR/tmp"
  sed -e "s#@VAR@#$VAR_DIR#g" -e "s#@RTMP_PORT@#$RTMP_PORT#g" -e "s#@HLS_PORT@#$HLS_PORT#g" \
    "$SCRIPT_DIR/media/nginx.conf.tmpl" >"$NGINX_CONF"
  nginx -c "$NGINX_CONF" -p "$VAR_DIR" -e "$VAR_DIR/nginx-error.log" 9>&- \
    || die "nginx failed to start (log: $VAR_DIR/nginx-error.log)"
}

start_rtsp() {
  if [[ -n "$(pid_matching rtsp_server.py)" ]]; then
    log "rtsp server already running (pid $(pid_matching rtsp_server.py))"
    return 0
  fi
  port_open "$RTSP_PORT" && die "port $RTSP_PORT is taken by another process"
  nohup /usr/bin/python3 "$SCRIPT_DIR/media/rtsp_server.py" "$RTSP_PORT" "$RTSP_UDP_BASE" "$RTSP_MOUNTS" \
    >"$RTSP_LOG" 2>&1 9>&- &
  echo $! >"$PID_FILE"
}

cmd_start() {
  take_lock 60
  local t0=$SECONDS deadline
  ensure_packages
  start_nginx
  start_rtsp
  deadline=$((SECONDS + START_TIMEOUT))
  until port_open "$RTSP_PORT" && port_open "$RTMP_PORT" && port_open "$HLS_PORT"; do
    # the pid file names the forked shell until it execs python: judge the process after a grace period
    if ((SECONDS >= deadline)) || { ((SECONDS - t0 >= 3)) && [[ -z "$(pid_matching rtsp_server.py)" ]]; }; then
      tail -n 20 "$RTSP_LOG" "$VAR_DIR/nginx-error.log" >&2 2>/dev/null || true
      die "not ready after $((SECONDS - t0))s"
    fi
    sleep 0.2
  done
  log "ready in $((SECONDS - t0))s: rtsp://127.0.0.1:$RTSP_PORT/cam0..$((RTSP_MOUNTS - 1)) (from udp $RTSP_UDP_BASE+N)," \
    "rtmp://127.0.0.1:$RTMP_PORT/live/NAME, http://127.0.0.1:$HLS_PORT/ (= $VAR_DIR/hls)"
}

stop_rtsp() {
  local pid
  pid="$(pid_matching rtsp_server.py)"
  if [[ -n "$pid" ]]; then stop_pid "$pid" 10; fi
  rm -f "$PID_FILE"
}

stop_nginx() {
  local pid
  pid="$(nginx_pid)"
  if [[ -n "$pid" ]]; then stop_pid "$pid" 10; fi
  rm -f "$NGINX_PID"
}

cmd_stop() {
  take_lock 60
  stop_rtsp
  stop_nginx
  log "stopped"
}

cmd_status() {
  local ok=0
  if [[ -n "$(pid_matching rtsp_server.py)" ]] && port_open "$RTSP_PORT"; then
    log "rtsp running on 127.0.0.1:$RTSP_PORT (pid $(pid_matching rtsp_server.py))"
  else
    log "rtsp not running"; ok=3
  fi
  if [[ -n "$(nginx_pid)" ]] && port_open "$RTMP_PORT" && port_open "$HLS_PORT"; then
    log "nginx running: rtmp 127.0.0.1:$RTMP_PORT, hls http 127.0.0.1:$HLS_PORT (pid $(nginx_pid))"
  else
    log "nginx not running"; ok=3
  fi
  return "$ok"
}

main() {
  local cmd="${1:-}"
  (($# > 0)) && shift
  mkdir -p "$VAR_DIR"
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) (cmd_stop) && cmd_start ;;
    # one server only (the live-server tests restart one mid-stream); the other keeps serving
    restart-rtsp) (take_lock 60 && stop_rtsp && log "rtsp stopped") && cmd_start ;;
    restart-nginx) (take_lock 60 && stop_nginx && log "nginx stopped") && cmd_start ;;
    status) cmd_status ;;
    logs) tail -n 50 "$RTSP_LOG" "$VAR_DIR/nginx-error.log" 2>/dev/null || true ;;
    *) usage ;;
  esac
}

main "$@"
