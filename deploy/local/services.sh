#!/usr/bin/env bash
# Start/stop/status of every local backing service used by vstream's dev setup and
# integration tests. Each service is deploy/local/<name>.sh start|stop|status (idempotent).
#
#   deploy/local/services.sh start|stop|restart|status [NAME...]
#
# start: every service at once (they are independent), then waits for all; exit non-zero if any
#        failed, after printing that service's output.
# stop:  every service at once (always tries all).
# status: one line per service; exit 0 when all answer, 3 otherwise.
# NAME... limits the command to those services. The same VSTREAM_* environment variables as the
# individual scripts apply.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# The services the test suite needs; a new server adds its script's name here.
SERVICES=(redis redis-cluster kafka vllm s3 kafka-cluster media)

# each CMD NAME...: runs deploy/local/NAME.sh CMD for every NAME in parallel, prefixing nothing
# (each script tags its own lines); prints a failed service's output and returns non-zero.
each() {
  local cmd=$1 rc=0 name tmp
  shift
  tmp=$(mktemp -d)
  declare -A pids=()
  for name in "$@"; do
    "$SCRIPT_DIR/$name.sh" "$cmd" >"$tmp/$name.log" 2>&1 &
    pids[$name]=$!
  done
  for name in "$@"; do
    if wait "${pids[$name]}"; then
      cat "$tmp/$name.log"
    else
      rc=$?
      cat "$tmp/$name.log" >&2
      echo "[services] $name $cmd failed (exit $rc)" >&2
    fi
  done
  rm -rf "$tmp"
  return "$rc"
}

cmd=${1:-}
shift || true
names=("$@")
((${#names[@]})) || names=("${SERVICES[@]}")

case "$cmd" in
  start) each start "${names[@]}" ;;
  stop) each stop "${names[@]}" ;;
  restart) each stop "${names[@]}" || true; each start "${names[@]}" ;;
  status) each status "${names[@]}" || exit 3 ;;
  *) echo "usage: $0 {start|stop|restart|status} [NAME...]" >&2; exit 2 ;;
esac
