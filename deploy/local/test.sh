#!/usr/bin/env bash
# Run the whole test suite (lint, types, unit and integration tests) against real Kafka and Redis.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VSTREAM_CACHE:-$HOME/.cache/vstream}/venv
cd "$ROOT"
"$ROOT/deploy/local/bootstrap.sh"
"$ROOT/deploy/local/services.sh" start
"$VENV/bin/ruff" check vstream workers api tests bench
"$VENV/bin/mypy"
"$ROOT/deploy/local/k8s-check.sh"   # helm lint/template + kubeconform, offline (tools cached)
"$VENV/bin/python" -m pytest "$@"
