"""The original video of a file source, for the review console's player, with HTTP Range requests.

A ``<video>`` element cannot send an ``Authorization`` header, and an API key must never travel in a URL
(it would land in logs, history and Referer headers). So the page asks, with its key, for a short-lived
token bound to one stream's file (``POST /v1/streams/{id}/media-token``) and gives the element
``/v1/media/{token}``. The token is 256 random bits; Redis keeps only its SHA-256 with a TTL
(``VSTREAM_API__MEDIA_TOKEN_TTL_S``), so a leaked Redis dump holds no usable token. The file is checked
against ``VSTREAM_API__FILE_ROOTS`` both when the token is made and on every request (roots may change;
a symlink may be swapped), and the stream against the key's patterns when the token is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from api.deps import Caller, Res, Resources, require_stream
from api.problems import Problem, problem_response
from api.schemas.keys import AUTH_ERRORS
from api.schemas.ui import MediaGrant, MediaToken
from api.security import validate_file_source
from vstream.schema import STREAM_ID_PATTERN

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["media"])

CHUNK = 256 * 1024
StreamId = Annotated[str, PathParam(pattern=STREAM_ID_PATTERN, description="Stream id")]
Token = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{20,100}$", description="From POST …/media-token")]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    first: int
    last: int  # inclusive, as in Content-Range


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def file_source(res: Resources, stream_id: str) -> Path | None:
    """The newest of the stream's job sources that is a file under the media roots, if any."""
    ids = res.jobs.stream_job_ids(stream_id)
    requests = [s.request for s in (res.jobs.get(i) for i in ids) if s is not None]
    for req in sorted(requests, key=lambda r: r.submitted_at, reverse=True):
        if "://" in req.source and not req.source.lower().startswith("file:"):
            continue  # a network source: nothing to serve
        try:
            return validate_file_source(req.source, res.settings.api)
        except Problem:
            continue  # outside the roots now, or gone
    return None


@router.post(
    "/streams/{stream_id}/media-token",
    response_model=MediaToken,
    status_code=201,
    summary="A short-lived URL of the stream's original video",
    responses={**AUTH_ERRORS, 403: {"description": "Stream not allowed"}, 404: {"description": "No file"}},
)
async def media_token(stream_id: StreamId, res: Res, caller: Caller) -> MediaToken:
    """For players that cannot send the API key: the URL works without one until ``expires_at``."""
    require_stream(caller, stream_id)
    path = await asyncio.to_thread(file_source, res, stream_id)
    if path is None:
        raise Problem(
            404, "No file source", f"stream {stream_id!r} has no job on a file under the media roots"
        )
    token, ttl = secrets.token_urlsafe(32), res.settings.api.media_token_ttl_s
    grant = MediaGrant(stream_id=stream_id, path=str(path), principal=caller.name)
    await res.redis.set(res.keys.media_token(_hash(token)), grant.model_dump_json(), ex=ttl)
    return MediaToken(
        url=f"/v1/media/{token}", expires_at=time.time() + ttl, stream_id=stream_id, name=path.name
    )


@router.get(
    "/media/{token}",
    response_class=StreamingResponse,
    summary="The video a media token grants (Range requests: 206, 416)",
    responses={
        200: {"content": {"video/mp4": {}}},
        206: {"description": "The requested byte range"},
        404: {"description": "Unknown or expired token, or the file is gone"},
        416: {"description": "The range lies outside the file"},
    },
)
async def media(
    token: Token, res: Res, range_header: Annotated[str | None, Header(alias="range")] = None
) -> Response:
    raw = await res.redis.get(res.keys.media_token(_hash(token)))
    if raw is None:
        raise Problem(404, "Unknown media token", "the token is unknown or expired; ask for a new one")
    grant = MediaGrant.model_validate_json(raw)
    try:
        path = await asyncio.to_thread(validate_file_source, grant.path, res.settings.api)
    except Problem as exc:
        logger.info("media token of %s refused: %s", grant.stream_id, exc.detail)
        raise Problem(404, "File not available", "the file is no longer under the media roots") from exc
    size = path.stat().st_size
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    try:
        wanted = parse_range(range_header, size)
    except ValueError as exc:
        reply = problem_response(416, "Range not satisfiable", f"{exc}; the file has {size} bytes")
        reply.headers.update({**headers, "Content-Range": f"bytes */{size}"})
        return reply
    if wanted is None:
        return StreamingResponse(
            _read(path, 0, size), media_type=kind, headers={**headers, "Content-Length": str(size)}
        )
    length = wanted.last - wanted.first + 1
    headers |= {"Content-Range": f"bytes {wanted.first}-{wanted.last}/{size}", "Content-Length": str(length)}
    return StreamingResponse(
        _read(path, wanted.first, length), status_code=206, media_type=kind, headers=headers
    )


@router.head("/media/{token}", include_in_schema=False)
async def media_head(token: Token, request: Request, res: Res) -> Response:
    full = await media(token, res, request.headers.get("range"))
    return Response(status_code=full.status_code, headers=dict(full.headers))


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range asked for; None for the whole file (no header, or several ranges, which a
    server may answer in full). ValueError when the range cannot be satisfied."""
    if header is None or "," in header:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        return None  # not a byte range we understand: RFC 9110 lets us ignore it
    first, last = match.groups()
    if first == "":  # a suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise ValueError(f"the suffix range {header!r} selects no bytes")
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    if start >= size:
        raise ValueError(f"the range {header!r} starts at or after the end")
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        raise ValueError(f"the range {header!r} ends before it starts")
    return ByteRange(start, end)


def _read(path: Path, offset: int, length: int) -> Iterator[bytes]:
    """Chunks of the file (a sync iterator: Starlette reads it on its thread pool)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        while length > 0:
            chunk = os.pread(fd, min(CHUNK, length), offset)
            if not chunk:
                return  # the file shrank meanwhile
            offset, length = offset + len(chunk), length - len(chunk)
            yield chunk
    finally:
        os.close(fd)
