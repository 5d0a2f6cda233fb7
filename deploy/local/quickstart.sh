#!/usr/bin/env bash
# Quick start: install, start Kafka and Redis, make a sample video and run the main job on it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VSTREAM_CACHE:-$HOME/.cache/vstream}/venv
"$ROOT/deploy/local/bootstrap.sh"
"$ROOT/deploy/local/services.sh" start
mkdir -p "$ROOT/var"
[ -f "$ROOT/var/sample.mp4" ] || "$VENV/bin/vstream" sample-video "$ROOT/var/sample.mp4" --seconds 60 >/dev/null
echo "[quickstart] vstream clips var/sample.mp4 --fps 2 --clip-seconds 8 --overlap 2 --json"
"$VENV/bin/vstream" clips "$ROOT/var/sample.mp4" --fps 2 --clip-seconds 8 --overlap 2 --json
