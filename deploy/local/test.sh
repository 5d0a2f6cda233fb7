#!/usr/bin/env bash
# Run the whole test suite (lint, types, unit and integration tests) against the real servers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VSTREAM_CACHE:-$HOME/.cache/vstream}/venv
cd "$ROOT"
"$ROOT/deploy/local/bootstrap.sh"
# The chart check (helm lint/template + kubeconform, offline; builds its tools once) needs no server:
# it runs while the servers start, which on a fresh machine overlaps helm's build with vLLM's install.
mkdir -p "$ROOT/var"
"$ROOT/deploy/local/k8s-check.sh" >"$ROOT/var/k8s-check.log" 2>&1 &
k8s=$!
"$ROOT/deploy/local/services.sh" start
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
if ! wait "$k8s"; then
  cat "$ROOT/var/k8s-check.log" >&2
  echo "[test] deploy/local/k8s-check.sh failed" >&2
  exit 1
fi
tail -n 3 "$ROOT/var/k8s-check.log"
"$VENV/bin/python" -m pytest "$@"
