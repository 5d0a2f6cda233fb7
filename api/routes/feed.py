"""Live feed: Server-Sent Events of event changes (open, update, close), resumable without loss.

The infer worker appends every change to a Redis stream per video stream (``Keys.feed``) in the same
transaction as the change itself, then copies it to one for all streams (``Keys.feed_all``; a separate step,
because on a Redis Cluster the two live in different hash slots, caught up after a crash by the stream's next
commit: see ``vstream.store``). Each SSE message carries its Redis
entry id as ``id:``; a client that reconnects with ``Last-Event-ID`` (browsers do it on their own) reads
on from exactly that entry, so nothing is missed or repeated as long as the feed still holds it (the
writer trims each feed to its newest ~100,000 entries; a client resuming from before the oldest entry
kept first gets an ``event: gap`` message saying so, to re-read that stretch with the range queries).
Ids of ``/v1/feed`` and of a stream's feed are positions in different Redis streams: resume each
endpoint with its own ids.

Every connection blocks in its own ``XREAD`` on a connection of the async pool (no shared reader, no lock),
for at most ``POLL_S`` at a time so that a client that went away is noticed and its connection released.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import cast

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import Caller, Res, require_stream
from api.keys import Principal
from api.problems import Problem
from api.schemas.results import (
    FEED_RESPONSES,
    LastEventIdHeader,
    LastEventIdQuery,
    Since,
    StreamFilter,
    StreamId,
)
from vstream.schema import STREAM_ID_PATTERN

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["feed"])

POLL_S = 1.0  # longest single XREAD block: how late a disconnected client is noticed
BATCH = 200  # entries per XREAD
RETRY_MS = 3000  # the reconnection delay suggested to EventSource clients
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Allow = Callable[[bytes], bool]  # does this entry's data go to this client?
STREAM_ID = re.compile(STREAM_ID_PATTERN)
Entry = tuple[bytes, dict[bytes, bytes]]  # (entry id, fields) as redis-py returns them (RESP2)
XReadReply = list[tuple[bytes, list[Entry]]] | None


@router.get("/streams/{stream_id}/feed", response_class=StreamingResponse, responses=FEED_RESPONSES)
async def stream_feed(
    request: Request,
    res: Res,
    caller: Caller,
    stream_id: StreamId,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    since: Since = None,
) -> Response:
    """Changes of one stream's events, live, as Server-Sent Events."""
    require_stream(caller, stream_id)
    key = res.keys.feed(stream_id)
    after = last_event_id_header or last_event_id or since
    start = await _start_id(res, key, after)
    return _sse(request, res, key, start, None, await _gap(res, key, start) if after is not None else b"")


@router.get("/feed", response_class=StreamingResponse, responses=FEED_RESPONSES)
async def all_feed(
    request: Request,
    res: Res,
    caller: Caller,
    streams: StreamFilter = None,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    since: Since = None,
) -> Response:
    """Changes of the events of every stream this key may see (or of ``streams``), live."""
    allow = _allow(caller, _wanted(caller, streams))
    key = res.keys.feed_all
    after = last_event_id_header or last_event_id or since
    start = await _start_id(res, key, after)
    return _sse(request, res, key, start, allow, await _gap(res, key, start) if after is not None else b"")


def _wanted(caller: Principal, streams: list[str] | None) -> set[str] | None:
    if not streams:
        return None
    wanted = {s.strip() for item in streams for s in item.split(",") if s.strip()}
    for stream_id in sorted(wanted):
        if not STREAM_ID.fullmatch(stream_id):
            message = f"{stream_id!r} is not a stream id"
            raise Problem(
                422,
                "Invalid request",
                f"streams: {message}",
                errors=[{"field": "query.streams", "message": message}],
            )
        require_stream(caller, stream_id)
    return wanted or None


def _allow(caller: Principal, wanted: set[str] | None) -> Allow | None:
    if caller.admin and wanted is None:
        return None  # everything

    def allow(data: bytes) -> bool:
        stream_id = json.loads(data)["event"]["stream_id"]
        return (wanted is None or stream_id in wanted) and caller.may_see(stream_id)

    return allow


async def _start_id(res: Res, key: str, after: str | None) -> str:
    """The entry id to read after: the client's, or the feed's newest entry (only what comes next)."""
    if after is not None:
        return after if "-" in after else f"{after}-0"
    newest = cast(list[Entry], await res.redis.xrevrange(key, count=1))
    return newest[0][0].decode() if newest else "0-0"


async def _gap(res: Res, key: str, after: str) -> bytes:
    """An SSE ``gap`` message when entries after ``after`` may have been trimmed from the feed (it keeps
    the newest ~100,000): the client re-reads that stretch with the range queries instead of silently
    missing it."""
    try:
        info = await res.redis.xinfo_stream(key)
    except redis.ResponseError:  # no feed yet: nothing was ever trimmed
        return b""
    first = info.get("first-entry")
    trimmed = int(info.get("entries-added", 0)) - int(info["length"])
    if not first or trimmed <= 0 or _entry_id(first[0].decode()) <= _entry_id(after):
        return b""
    data = json.dumps({"after": after, "oldest": first[0].decode(), "trimmed": trimmed})
    return f"event: gap\ndata: {data}\n\n".encode()


def _entry_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _sse(
    request: Request, res: Res, key: str, start: str, allow: Allow | None, gap: bytes
) -> StreamingResponse:
    heartbeat = res.settings.api.sse_heartbeat_s
    body = _messages(request, res, key, start, allow, heartbeat, gap)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def _messages(
    request: Request, res: Res, key: str, last: str, allow: Allow | None, heartbeat: float, gap: bytes
) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MS}\n: connected\n\n".encode() + gap
    quiet_since = time.monotonic()
    try:
        while not await request.is_disconnected():
            wait = heartbeat - (time.monotonic() - quiet_since)
            block_ms = max(1, int(min(wait, POLL_S) * 1000))
            reply = cast(XReadReply, await res.redis.xread({key: last}, count=BATCH, block=block_ms))
            frames = []
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    if allow is None or allow(fields[b"data"]):
                        frames.append(_frame(entry_id, fields))
            if frames:
                yield b"".join(frames)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= heartbeat:
                yield b": ping\n\n"
                quiet_since = time.monotonic()
    finally:
        logger.debug("feed %s closed after %s", key, last)


def _frame(entry_id: bytes, fields: dict[bytes, bytes]) -> bytes:
    return b"id: " + entry_id + b"\nevent: " + fields[b"kind"] + b"\ndata: " + fields[b"data"] + b"\n\n"
