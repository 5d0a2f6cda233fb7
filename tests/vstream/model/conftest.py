"""The real vLLM that deploy/local/vllm.sh starts (CPU build, tiny checkpoint, no extra flags)."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.vstream.model.real_servers import VllmServer


@pytest.fixture(scope="session")
def vllm() -> VllmServer:
    """Fails (never skips) when the server is not up, like the other real services."""
    base_url = f"http://127.0.0.1:{os.environ.get('VSTREAM_VLLM_PORT', '8000')}/v1"
    try:
        (model,) = httpx.get(f"{base_url}/models", timeout=5).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        pytest.fail(f"vLLM not reachable at {base_url} ({exc!r}): run deploy/local/services.sh start")
    return VllmServer(base_url, str(model["id"]), str(model["root"]))
