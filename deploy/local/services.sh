#!/usr/bin/env bash
# Start/stop/status of every local backing service used by vstream's dev setup and
# integration tests: Redis (deploy/local/redis.sh) and Kafka (deploy/local/kafka.sh).
#
#   deploy/local/services.sh start|stop|restart|status
#
# start: Redis, then Kafka (stops at the first failure, exit non-zero).
# stop:  Kafka, then Redis (always tries both).
# status: one line per service; exit 0 when all answer, 3 otherwise.
# The same VSTREAM_* environment variables as the individual scripts apply.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REDIS="$SCRIPT_DIR/redis.sh"
KAFKA="$SCRIPT_DIR/kafka.sh"

start() {
  "$REDIS" start
  "$KAFKA" start
}

stop() {
  local rc=0
  "$KAFKA" stop || rc=$?
  "$REDIS" stop || rc=$?
  return "$rc"
}

status() {
  local rc=0
  "$REDIS" status || rc=3
  "$KAFKA" status || rc=3
  return "$rc"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop && start ;;
  status) status ;;
  *) echo "usage: $0 {start|stop|restart|status}" >&2; exit 2 ;;
esac
