#!/usr/bin/env bash
# Install everything vstream needs on a fresh Debian machine; cheap to re-run.
# The virtualenv lives outside the clone (${VSTREAM_CACHE:-~/.cache/vstream}/venv) so torch (~4 GB) is
# downloaded once per machine, not once per clone or CI run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${VSTREAM_CACHE:-$HOME/.cache/vstream}
VENV=$CACHE/venv

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v redis-server >/dev/null || need+=(redis-server)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
# live-media servers for the live-source tests (deploy/local/media.sh)
command -v nginx >/dev/null || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null \
  || need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
# the review console's browser tests drive Debian's Chromium (Playwright cannot download its own here)
command -v chromium >/dev/null || need+=(chromium fonts-dejavu-core)
if ((${#need[@]})); then
  echo "[bootstrap] apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$CACHE"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
stamp="$VENV/.deps-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[bootstrap] installing Python dependencies into $VENV (first time: several minutes for torch)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e "$ROOT[dev]"
  touch "$stamp"
else
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT" 2>/dev/null
fi
echo "[bootstrap] ready: $VENV"
