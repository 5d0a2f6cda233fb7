"""A real HTTP server imitating vLLM's OpenAI-compatible API, for the OpenAI backend's tests.

FastAPI under uvicorn in a background thread on 127.0.0.1 (a socket bound to port 0, so no port race).
It serves ``GET /v1/models`` and ``POST /v1/chat/completions``, records every chat request (body, headers,
arrival time), counts requests in flight, and answers each chat request with the next scripted
:class:`Reply` (``ok`` once the script is empty)::

    with FakeOpenAIServer() as server:
        server.script(Reply.error(500), Reply.ok("fine"))
        backend = OpenAIBackend(server.base_url, server.model)
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

ReplyKind = Literal["ok", "error", "garbage", "drop"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``content`` may be a function of the request body (to echo what was sent)."""

    kind: ReplyKind = "ok"
    content: str | Callable[[dict[str, Any]], str] = "ok"
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"  # vLLM after PR #27752 uses "reasoning"
    status: int = 200
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (for timeouts and concurrency)
    usage: tuple[int, int] = (321, 12)  # prompt_tokens, completion_tokens
    prompt_token_ids: list[int] | None = None  # vLLM's answer to return_token_ids

    @classmethod
    def ok(cls, content: str | Callable[[dict[str, Any]], str] = "ok", **kw: Any) -> Reply:
        return cls(kind="ok", content=content, **kw)

    @classmethod
    def error(cls, status: int, message: str = "scripted error", **kw: Any) -> Reply:
        return cls(kind="error", status=status, message=message, **kw)

    @classmethod
    def slow(cls, delay: float, content: str = "slow") -> Reply:
        return cls(kind="ok", content=content, delay=delay)

    @classmethod
    def garbage(cls) -> Reply:
        return cls(kind="garbage")

    @classmethod
    def drop(cls) -> Reply:
        return cls(kind="drop")


@dataclass(frozen=True)
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


class FakeOpenAIServer:
    def __init__(self, model: str = "glm-4.5v") -> None:
        self.model = model
        self.served_models: list[str] = [model]
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._epoch = 0  # bumped by reset(): requests of an earlier test still sleeping are not counted
        self._script: deque[Reply] = deque()
        self._responder: Callable[[dict[str, Any]], Reply] | None = None
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def respond_with(self, responder: Callable[[dict[str, Any]], Reply]) -> None:
        """Answer every request the script does not cover with ``responder(body)``."""
        with self._lock:
            self._responder = responder

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._responder = None
            self.requests.clear()
            self.served_models = [self.model]
            self._epoch += 1
            self.in_flight = self.max_in_flight = 0

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(), log_level="critical", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the app --------------------------------------------------------------------------------------

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            data = [{"id": m, "object": "model", "owned_by": "vllm"} for m in self.served_models]
            return {"object": "list", "data": data}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = json.loads(await request.body())
            with self._lock:
                self.requests.append(Recorded(body, dict(request.headers), time.monotonic()))
                if self._script:
                    reply = self._script.popleft()
                else:
                    reply = self._responder(body) if self._responder else Reply.ok()
                epoch = self._epoch
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(reply.delay)
                return _respond(reply, body, self.model)
            finally:
                with self._lock:
                    if epoch == self._epoch:
                        self.in_flight -= 1

        return app


def _respond(reply: Reply, body: dict[str, Any], model: str) -> Response:
    if reply.kind == "error":
        # vLLM's error shape: {"error": {"message", "type", "param", "code"}}
        error = {"message": reply.message, "type": "BadRequestError", "param": None, "code": reply.status}
        return JSONResponse({"error": error}, status_code=reply.status, headers=reply.headers)
    if reply.kind == "garbage":
        return PlainTextResponse('{"choices": [ not json', media_type="application/json")
    if reply.kind == "drop":
        return StreamingResponse(_broken_stream(), media_type="application/json")
    content = reply.content(body) if callable(reply.content) else reply.content
    message: dict[str, Any] = {"role": "assistant", "content": content, "tool_calls": []}
    if reply.reasoning is not None:
        message[reply.reasoning_field] = reply.reasoning
    prompt, completion = reply.usage
    ids = {} if reply.prompt_token_ids is None else {"prompt_token_ids": reply.prompt_token_ids}
    return JSONResponse(
        {
            **ids,
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )


async def _broken_stream() -> AsyncIterator[bytes]:
    # Headers and part of the body go out, then the app fails: uvicorn closes the connection mid-body,
    # which the client sees as a dropped connection (httpx.RemoteProtocolError).
    yield b'{"id": "chatcmpl-partial", "choi'
    raise ConnectionAbortedError("scripted connection drop")
