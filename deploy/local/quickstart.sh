#!/usr/bin/env bash
# Quick start: install, start Kafka and Redis, make a sample video and run the main job on it:
# GLM-4.5V event recognition with the tiny random-weight model (random text: it proves the plumbing).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VSTREAM_CACHE:-$HOME/.cache/vstream}/venv
"$ROOT/deploy/local/bootstrap.sh"
"$ROOT/deploy/local/services.sh" start redis kafka   # the quick start needs only these two
mkdir -p "$ROOT/var"
[ -f "$ROOT/var/sample.mp4" ] || "$VENV/bin/vstream" sample-video "$ROOT/var/sample.mp4" --seconds 30 >/dev/null
echo "[quickstart] vstream analyze var/sample.mp4 --task events --events \"person falls,car stops\" --model tiny --json"
"$VENV/bin/vstream" analyze "$ROOT/var/sample.mp4" --task events --events "person falls,car stops" --model tiny --json
