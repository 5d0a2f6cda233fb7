#!/usr/bin/env bash
# Fetch, into .whl/, the wheels that `bench/infer.py --gpu` needs on a lent GPU machine beyond its image
# (which has torch, tokenizers, numpy, jinja2 and an older transformers, but no pydantic and no internet).
# Versions are the ones the CPU test suite runs with, so the GPU run exercises the same code paths.
# Then, with the device tool: carry [".whl"] and run
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site:. python3 bench/infer.py --gpu --layers 4 --batches 1,4,8
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VSTREAM_CACHE:-$HOME/.cache/vstream}/venv
PKGS=(transformers huggingface-hub httpx2 httpcore2 hf-xet typer pydantic pydantic-core pydantic-settings
  annotated-types typing-inspection typing-extensions python-dotenv truststore click idna regex)
pins=()
for pkg in "${PKGS[@]}"; do
  version=$("$VENV/bin/python" -m pip show "$pkg" 2>/dev/null | sed -n 's/^Version: //p')
  [[ -n $version ]] || { echo "not in $VENV: $pkg (run deploy/local/bootstrap.sh)" >&2; exit 1; }
  pins+=("$pkg==$version")
done
rm -rf "$ROOT/.whl" && mkdir -p "$ROOT/.whl"
plats=()
for n in 17 24 27 28 31 34; do plats+=(--platform "manylinux_2_${n}_x86_64"); done
"$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${plats[@]}" --platform manylinux2014_x86_64 -d "$ROOT/.whl" "${pins[@]}"
du -sh "$ROOT/.whl"
