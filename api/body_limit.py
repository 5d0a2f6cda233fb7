"""The request-size limit, enforced on the bytes received as well as on Content-Length.

A chunked body (``Transfer-Encoding: chunked``) has no Content-Length, so the header check alone let any
size through. A pure ASGI middleware, so the body is counted as it streams in and never buffered here.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems


class _TooLarge(Exception):
    """Raised from ``receive`` once the body passes the limit, which ends the app's read of it."""


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(scope, receive, send)  # refused before a byte of the body is read
            return
        received = 0
        over = started = False

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to the failed read (FastAPI: a 400) gives way to the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # FastAPI turns the failed read into a 400; other code may let it (or an error it caused) out
            if not over or started:
                raise
        if over and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem_response(
            413, "Request too large", f"bodies are limited to {self.limit} bytes"
        )
        await response(scope, receive, send)
