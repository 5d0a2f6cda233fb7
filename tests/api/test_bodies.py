"""Request bodies: the size limit on the bytes received (chunked too), JSON content type, JSON syntax."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import wait_for
from vstream.config import Settings

pytestmark = pytest.mark.integration

KEY = {"name": "chunked", "streams": ["cam-*"]}


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    """A generator body: httpx sends it with Transfer-Encoding: chunked and no Content-Length."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


# ---- size limit ------------------------------------------------------------------------------------------


def test_a_chunked_body_over_the_limit_is_413_not_read_as_json(
    client: TestClient, admin: dict[str, str], api_settings: Settings
) -> None:
    limit = api_settings.api.max_body_bytes
    big = json.dumps({**KEY, "name": "x" * (limit + 100_000)}).encode()
    headers = {**admin, "Content-Type": "application/json"}
    r = client.post("/v1/keys", content=chunks(big), headers=headers)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == f"bodies are limited to {limit} bytes"
    assert client.get("/v1/keys", headers=admin).json()["items"] == []


def test_a_chunked_body_under_the_limit_is_served(client: TestClient, admin: dict[str, str]) -> None:
    headers = {**admin, "Content-Type": "application/json"}
    r = client.post("/v1/keys", content=chunks(json.dumps(KEY).encode(), size=7), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["streams"] == ["cam-*"]


@pytest.fixture
def small_limit_server(api_settings: Settings) -> Iterator[int]:
    """The app behind uvicorn (real chunked transfer, body arriving in pieces) with a 4 KiB limit."""
    api = api_settings.api.model_copy(update={"max_body_bytes": 4096})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(api_settings.model_copy(update={"api": api}), kafka=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "uvicorn")
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"connection closed before a response: {data!r}"
        data += part
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        part = sock.recv(65536)
        assert part, "connection closed inside the response body"
        body += part
    return int(lines[0].split()[1]), headers, body


@pytest.mark.timeout(60)
def test_the_server_answers_413_while_a_chunked_body_is_still_coming(small_limit_server: int) -> None:
    """5 KB of chunks and no final chunk: the 413 comes without the rest of the body (nothing buffers it)."""
    with socket.create_connection(("127.0.0.1", small_limit_server), timeout=20) as sock:
        sock.sendall(
            b"POST /v1/keys HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer admin-test-key\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(5):
            sock.sendall(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
        status, headers, body = _read_response(sock)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["detail"] == "bodies are limited to 4096 bytes"


# ---- content type ----------------------------------------------------------------------------------------


def _json_body_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every operation the OpenAPI document gives a JSON body, path parameters filled."""
    doc = client.get("/openapi.json").json()
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "cam-1", path))
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]


@pytest.mark.parametrize(
    ("content_type", "sent"),
    [
        ("application/x-www-form-urlencoded", "with Content-Type 'application/x-www-form-urlencoded'"),
        ("text/plain", "with Content-Type 'text/plain'"),
        (None, "without a Content-Type"),
    ],
)
def test_a_json_body_without_the_json_content_type_is_415_on_every_route(
    client: TestClient, admin: dict[str, str], content_type: str | None, sent: str
) -> None:
    """What `curl -d '{...}'` sends (form-urlencoded): a 415 that names the fix, not a confusing 422."""
    routes = _json_body_routes(client)
    assert {("POST", "/v1/keys"), ("POST", "/v1/jobs"), ("POST", "/v1/streams/cam-1/webhooks")} <= set(routes)
    headers = {**admin, **({"Content-Type": content_type} if content_type else {})}
    for method, path in routes:
        r = client.request(method, path, content=json.dumps(KEY).encode(), headers=headers)
        assert r.status_code == 415, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["title"] == "Unsupported media type"
        assert sent in problem["detail"] and "Content-Type: application/json" in problem["detail"]
    assert client.get("/v1/keys", headers=admin).json()["items"] == []


def test_json_of_the_wrong_shape_stays_a_422(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/v1/keys", content=b'["cam-*"]', headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["title"] == "Invalid request"


def test_a_json_suffix_content_type_is_json(client: TestClient, admin: dict[str, str]) -> None:
    headers = {**admin, "Content-Type": "application/merge-patch+json; charset=utf-8"}
    assert client.post("/v1/keys", content=json.dumps(KEY).encode(), headers=headers).status_code == 201


# ---- JSON syntax -----------------------------------------------------------------------------------------


def test_invalid_json_says_what_and_where(client: TestClient, admin: dict[str, str]) -> None:
    body = b'{"name": "x",\n "streams": ["a",]}'
    r = client.post("/v1/keys", content=body, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    message = "request body is not valid JSON: Expecting value at line 2 column 18"
    assert r.json()["detail"] == message
    assert r.json()["errors"] == [{"field": "body", "message": message}]
    with pytest.raises(json.JSONDecodeError) as python:  # the same place Python's own parser reports
        json.loads(body)
    assert (python.value.lineno, python.value.colno) == (2, 18)
