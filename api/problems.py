"""Errors as RFC 9457 problem details: every error body says what went wrong and what to fix."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", **extra: object) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def problem_response(status: int, title: str, detail: str = "", **extra: object) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _validation_message(err: dict[str, object]) -> dict[str, object]:
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]  # type: ignore[attr-defined]
    return {"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))}


def _sent_as_non_json(errors: Sequence[Any]) -> bool:
    """True when a body failed only because it was not read as JSON (a missing or other content type).

    FastAPI parses a body as JSON under a JSON content type only; otherwise the model gets the raw bytes,
    and its 422 ("Input should be a valid dictionary") hides that the header was the mistake.
    """
    return any(
        tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes | bytearray) for e in errors
    )


def _json_syntax_message(err: dict[str, Any], doc: object) -> str:
    """Where and why the body is not JSON; FastAPI's own message is "<offset>: JSON decode error"."""
    reason = str((err.get("ctx") or {}).get("error", "syntax error"))
    loc = tuple(err.get("loc", ()))
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    if pos is None:
        return f"request body is not valid JSON: {reason}"
    if not isinstance(doc, str):
        return f"request body is not valid JSON: {reason} at character {pos}"
    where = json.JSONDecodeError(reason, doc, pos)  # only for its line and column arithmetic
    return f"request body is not valid JSON: {reason} at line {where.lineno} column {where.colno}"


def _validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    errs = exc.errors()
    if _sent_as_non_json(errs):
        sent = request.headers.get("content-type")
        how = f"with Content-Type {sent!r}" if sent else "without a Content-Type"
        return problem_response(
            415,
            "Unsupported media type",
            f"the body was sent {how}; send JSON with the header 'Content-Type: application/json'",
        )
    syntax = next((e for e in errs if e.get("type") == "json_invalid"), None)
    if syntax is not None:
        message = _json_syntax_message(syntax, exc.body)
        return problem_response(422, "Invalid JSON", message, errors=[{"field": "body", "message": message}])
    errors = [_validation_message(e) for e in errs]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem_response(422, "Invalid request", detail, errors=errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), "")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error", "the server failed; the error is logged")
