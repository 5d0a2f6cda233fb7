"""The OpenAPI document: examples everywhere, and a property-based run that finds no server error."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.core.result import Err, Ok

from api.app import create_app
from tests.api.conftest import ADMIN
from vstream.config import Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_api(api_settings: Settings) -> Iterator[str]:
    """The real app behind uvicorn on loopback (lifespan included), for schemathesis to call."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(api_settings), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_no_generated_request_causes_a_server_error(live_api: str) -> None:
    """Schemathesis generates requests from the OpenAPI document for every operation (valid and invalid
    values, with the admin key so requests get past authentication); none may get a 5xx."""
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    failures: list[str] = []
    # SSE feeds stream until the client leaves: they have their own tests (tests/api/test_feed.py)
    loaded = list(schema.get_all_operations())
    assert not [r.err() for r in loaded if isinstance(r, Err)], "every operation in the document loads"
    operations = [r.ok() for r in loaded if isinstance(r, Ok) and not r.ok().path.endswith("/feed")]
    assert len(operations) >= 20, "the document covers the API"
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        check()
    assert not failures, failures


def _has_example(node: dict[str, Any], components: dict[str, Any]) -> bool:
    if "example" in node or "examples" in node:
        return True
    schema_ = node.get("schema", node)
    if "$ref" in schema_:
        schema_ = components[schema_["$ref"].rsplit("/", 1)[-1]]
    return "example" in schema_ or "examples" in schema_


def test_every_request_and_json_response_has_an_example(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    components = doc["components"]["schemas"]
    missing = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None and not _has_example(body, components):
                missing.append(f"{method.upper()} {path} request")
            ok: dict[str, Any] = next((r for code, r in op["responses"].items() if code.startswith("2")), {})
            media = ok.get("content", {}).get("application/json")
            if media is not None and media.get("schema") and not _has_example(media, components):
                missing.append(f"{method.upper()} {path} response")
    assert not missing, f"operations without examples: {missing}"
