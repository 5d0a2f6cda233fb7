"""Result queries: streams, events (time range and filters), one event with its evidence, segments, captions.

Every time-ranged collection is a Redis sorted set scored by the records' start (media seconds), written by
``vstream.store.ResultStore``: of record ids whose JSON lies under its own key (events, segments), or of
the record JSON itself (captions). A query

* reads the set by score from ``start - span`` to ``end``, where ``span`` is the longest record of that
  collection in the stream (:func:`spans_key`), so every record overlapping ``[start, end]`` is found;
  records starting before ``start`` are kept only if they end at or after it;
* pages by (score, member) after an opaque cursor: the position of the last record *read*, so a page never
  repeats or skips a record, whatever is added meanwhile;
* answers with the stored JSON bytes joined together. Bodies are parsed only where a filter needs them
  (records starting before ``start``; label, confidence, state, wall-clock filters), and such scans stop
  after ``SCAN_BUDGET`` records with a cursor to go on from.

Extension point: another time-ranged collection (summaries, chapters, highlights) is one :class:`Collection`
plus a route that calls :func:`collection_page`, taking the parameters of ``api.schemas.results``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, Response

from api.deps import Caller, Res, require_stream
from api.problems import Problem
from api.schemas.keys import AUTH_ERRORS, problem_doc
from api.schemas.results import (
    ERRORS,
    CaptionPage,
    Cursor,
    End,
    EventDetail,
    EventId,
    EventPage,
    Labels,
    Limit,
    MinConfidence,
    SegmentPage,
    Start,
    State,
    StreamId,
    StreamList,
    WallEnd,
    WallStart,
)
from vstream.names import Keys
from vstream.store import version_key

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["results"])

DEFAULT_LIMIT = 100
SCAN_BUDGET = 1000  # records one request may read when filters reject most of them
MAX_CHUNK = 250  # records read per round trip while filtering
MAX_EVIDENCE_CLIPS = 100
MAX_CLIP_SECONDS = 600.0  # ClipParams.clip_seconds <= 600: no caption (one per clip) spans more
_TIE_SLACK = 8  # extra members read past a cursor, for records sharing the cursor's start time
Position = tuple[float, bytes]  # (score, member) of the last record read
Doc = dict[str, Any]


@dataclass(frozen=True)
class Collection:
    """A time-ranged collection: a sorted set of members by start time, per stream."""

    name: str
    index: Callable[[Keys, str], str]  # the sorted set of one stream
    body: Callable[[Keys, str], str] | None  # the key of a member's JSON; None: members are the JSON
    max_span: float | None = None  # bound on end - start when the stream has no recorded span


EVENTS = Collection("events", Keys.events, Keys.event)
SEGMENTS = Collection("segments", Keys.segments, Keys.segment)
CAPTIONS = Collection("captions", Keys.captions, None, MAX_CLIP_SECONDS)


def spans_key(keys: Keys, stream_id: str) -> str:
    """Sorted set: collection name -> longest end - start of its records in the stream.

    The writer keeps it with ``ZADD GT`` in its commit (see the module docstring of ``vstream.store``);
    while it is missing, ranged queries read from the start of the set (correct, but slower)."""
    return f"{keys.prefix}spans:{stream_id}"


@dataclass(frozen=True)
class RangeQuery:
    start: float | None
    end: float | None
    limit: int
    cursor: str | None
    match: Callable[[Doc], bool] | None = None  # a filter on the parsed record
    filters: str = ""  # the filters, in the cursor's fingerprint


# --- routes ---------------------------------------------------------------------------------------------


@router.get("/streams", response_model=StreamList, responses=AUTH_ERRORS, summary="List the streams")
async def list_streams(res: Res, caller: Caller) -> StreamList:
    """Stream ids that have results and that this key may see."""
    members = cast(set[bytes], await res.redis.smembers(res.keys.streams))
    return StreamList(items=sorted(s for s in (m.decode() for m in members) if caller.may_see(s)))


@router.get("/streams/{stream_id}/events", responses={200: {"model": EventPage}, **ERRORS})
async def list_events(
    res: Res,
    caller: Caller,
    stream_id: StreamId,
    start: Start = None,
    end: End = None,
    wall_start: WallStart = None,
    wall_end: WallEnd = None,
    label: Labels = None,
    min_confidence: MinConfidence = None,
    state: State = None,
    limit: Limit | None = None,
    cursor: Cursor = None,
) -> Response:
    """Events overlapping a media-time and/or wall-clock range, oldest first, with optional filters."""
    require_stream(caller, stream_id)
    check_range("start", start, "end", end)
    check_range("wall_start", wall_start, "wall_end", wall_end)
    labels = sorted(set(label)) if label else None
    query = RangeQuery(
        start,
        end,
        page_limit(res, limit),
        cursor,
        event_filter(labels, min_confidence, state, wall_start, wall_end),
        repr((wall_start, wall_end, labels, min_confidence, state)),
    )
    return await collection_page(res, EVENTS, stream_id, query)


@router.get(
    "/events/{event_id}",
    responses={
        200: {"model": EventDetail},
        404: problem_doc(
            404, "No such event (or it expired)", "Event not found", "no event 'x' (unknown, or expired)"
        ),
        **ERRORS,
    },
)
async def get_event(res: Res, caller: Caller, event_id: EventId) -> Response:
    """One event with its evidence: clip ids, frame timestamps, boxes, and what each clip saw."""
    raw = await res.redis.get(res.keys.event(event_id))
    if raw is None:
        raise Problem(404, "Event not found", f"no event {event_id!r} (unknown, or expired)")
    doc = json.loads(raw)
    require_stream(caller, doc["stream_id"])
    doc["evidence"] = await _evidence(res, doc)
    return _json(json.dumps(doc, separators=(",", ":")).encode())


@router.get("/streams/{stream_id}/segments", responses={200: {"model": SegmentPage}, **ERRORS})
async def list_segments(
    res: Res,
    caller: Caller,
    stream_id: StreamId,
    start: Start = None,
    end: End = None,
    limit: Limit | None = None,
    cursor: Cursor = None,
) -> Response:
    """Segments (the stream's chapters) overlapping a media-time range, oldest first."""
    require_stream(caller, stream_id)
    check_range("start", start, "end", end)
    return await collection_page(
        res, SEGMENTS, stream_id, RangeQuery(start, end, page_limit(res, limit), cursor)
    )


@router.get("/streams/{stream_id}/captions", responses={200: {"model": CaptionPage}, **ERRORS})
async def list_captions(
    res: Res,
    caller: Caller,
    stream_id: StreamId,
    start: Start = None,
    end: End = None,
    limit: Limit | None = None,
    cursor: Cursor = None,
) -> Response:
    """Clip captions overlapping a media-time range, oldest first."""
    require_stream(caller, stream_id)
    check_range("start", start, "end", end)
    return await collection_page(
        res, CAPTIONS, stream_id, RangeQuery(start, end, page_limit(res, limit), cursor)
    )


# --- validation -----------------------------------------------------------------------------------------


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        "Invalid request",
        f"{field}: {message}",
        errors=[{"field": f"query.{field}", "message": message}],
    )


def check_range(lo_name: str, lo: float | None, hi_name: str, hi: float | None) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise _invalid(
            lo_name, f"{lo_name} ({lo:g}) is after {hi_name} ({hi:g}); expected {lo_name} <= {hi_name}"
        )


def page_limit(res: Res, limit: int | None) -> int:
    top = res.settings.api.page_limit_max
    if limit is None:
        return min(DEFAULT_LIMIT, top)
    if limit > top:
        raise _invalid("limit", f"at most {top} items per page (got {limit})")
    return limit


def event_filter(
    labels: list[str] | None,
    min_confidence: float | None,
    state: str | None,
    wall_start: float | None,
    wall_end: float | None,
) -> Callable[[Doc], bool] | None:
    checks: list[Callable[[Doc], bool]] = []
    if labels:
        wanted = set(labels)
        checks.append(lambda d: d["label"] in wanted)
    if min_confidence is not None:
        checks.append(lambda d: d["confidence"] >= min_confidence)
    if state is not None:
        checks.append(lambda d: d["state"] == state)
    if wall_start is not None:
        checks.append(lambda d: d.get("wall_end") is not None and d["wall_end"] >= wall_start)
    if wall_end is not None:
        checks.append(lambda d: d.get("wall_start") is not None and d["wall_start"] <= wall_end)
    if not checks:
        return None
    return lambda d: all(check(d) for check in checks)


# --- cursor ---------------------------------------------------------------------------------------------


def _fingerprint(coll: Collection, stream_id: str, q: RangeQuery) -> str:
    basis = f"{coll.name}|{stream_id}|{q.start!r}|{q.end!r}|{q.filters}".encode()
    return hashlib.blake2b(basis, digest_size=6).hexdigest()


def encode_cursor(pos: Position, fingerprint: str) -> str:
    raw = f"1|{pos[0]!r}|{fingerprint}|".encode() + pos[1]
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, fingerprint: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, score, fp, member = raw.split(b"|", 3)
        pos = (float(score), member)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("cursor", "not a cursor of this API (pass next_cursor back unchanged)") from exc
    if version != b"1" or not math.isfinite(pos[0]):
        raise _invalid("cursor", "not a cursor of this API (pass next_cursor back unchanged)")
    if fp.decode() != fingerprint:
        raise _invalid(
            "cursor", "the cursor belongs to another query: keep the stream and filters of its first page"
        )
    return pos


# --- the scan -------------------------------------------------------------------------------------------


async def collection_page(res: Res, coll: Collection, stream_id: str, q: RangeQuery) -> Response:
    """One page of ``coll`` in ``stream_id``: the stored JSON of each record, joined, and the next cursor."""
    fingerprint = _fingerprint(coll, stream_id, q)
    pos = decode_cursor(q.cursor, fingerprint) if q.cursor else None
    lo, hi = await _bounds(res, coll, stream_id, q)
    items, last = await _scan(res, coll, coll.index(res.keys, stream_id), q, (lo, hi), pos)
    cursor = b"null" if last is None else b'"' + encode_cursor(last, fingerprint).encode() + b'"'
    return _json(b'{"items":[' + b",".join(items) + b'],"next_cursor":' + cursor + b"}")


async def _bounds(res: Res, coll: Collection, stream_id: str, q: RangeQuery) -> tuple[float, float]:
    hi = math.inf if q.end is None else q.end
    if q.start is None:
        return -math.inf, hi
    span = await res.redis.zscore(spans_key(res.keys, stream_id), coll.name)
    if span is None:
        span = math.inf if coll.max_span is None else coll.max_span
    return q.start - span, hi


async def _scan(
    res: Res, coll: Collection, index: str, q: RangeQuery, bounds: tuple[float, float], pos: Position | None
) -> tuple[list[bytes], Position | None]:
    """Records after ``pos`` until the page is full: their JSON, and where to go on from (None: the end)."""
    items: list[bytes] = []
    scanned, chunk = 0, q.limit
    body_key = None if coll.body is None else coll.body(res.keys, "").encode()
    while True:
        if q.match is not None:  # filtering: read ahead, growing the reads, within the budget
            chunk = min(max(chunk, 2 * (q.limit - len(items)), 16), MAX_CHUNK, SCAN_BUDGET - scanned)
        else:
            chunk = q.limit - len(items)
        members = await _after(res, index, bounds, pos, chunk + 1)  # one more: is there a next page?
        batch = members[:chunk]
        bodies = [m for m, _ in batch] if body_key is None else await _mget(res, body_key, batch)
        for (member, score), body in zip(batch, bodies, strict=True):
            if len(items) == q.limit:
                return items, pos
            pos = (score, member)
            if body is not None and _keep(body, score, q):  # None: expired since it was indexed
                items.append(body)
        scanned += len(batch)
        if len(members) <= chunk:
            return items, None
        if len(items) == q.limit or scanned >= SCAN_BUDGET:
            return items, pos
        chunk *= 2


async def _mget(res: Res, prefix: bytes, batch: list[tuple[bytes, float]]) -> list[bytes | None]:
    if not batch:
        return []
    return cast(list[bytes | None], await res.redis.mget([prefix + m for m, _ in batch]))


async def _after(
    res: Res, index: str, bounds: tuple[float, float], pos: Position | None, n: int
) -> list[tuple[bytes, float]]:
    """Up to ``n`` (member, score) of ``index`` in ``bounds``, ordered by (score, member), after ``pos``."""
    lo, hi = bounds
    if pos is None or pos[0] < lo:
        found = await res.redis.zrange(index, lo, hi, byscore=True, offset=0, num=n, withscores=True)
        return cast(list[tuple[bytes, float]], found)
    score, member = pos
    offset = 0
    while True:  # from the cursor's score, past the members with that score up to the cursor's member
        want = n + _TIE_SLACK
        got = cast(
            list[tuple[bytes, float]],
            await res.redis.zrange(index, score, hi, byscore=True, offset=offset, num=want, withscores=True),
        )
        skip = 0
        while skip < len(got) and got[skip][1] == score and got[skip][0] <= member:
            skip += 1
        if len(got) - skip >= n or len(got) < want:
            return got[skip : skip + n]
        offset += skip  # more members at the cursor's score than the slack: read past them


def _keep(body: bytes, score: float, q: RangeQuery) -> bool:
    before = q.start is not None and score < q.start
    if not before and q.match is None:
        return True
    doc = json.loads(body)
    if before and doc["end"] < q.start:
        return False  # starts before the range and ends before it too
    return q.match is None or q.match(doc)


# --- evidence -------------------------------------------------------------------------------------------


async def _evidence(res: Res, event: Doc) -> list[Doc]:
    """What each clip of the event saw: its observations of the event's label inside the event's span."""
    version = version_key(event["model_id"], event["prompt_hash"])
    clip_ids = event["clip_ids"][:MAX_EVIDENCE_CLIPS]
    if not clip_ids:
        return []
    raws = await res.redis.mget([res.keys.result(c, version) for c in clip_ids])
    out = []
    for raw in raws:
        if raw is None:
            continue  # the clip's result expired before the event
        result = json.loads(raw)
        seen = [
            o
            for o in result["observations"]
            if o["label"] == event["label"] and o["end"] >= event["start"] and o["start"] <= event["end"]
        ]
        out.append(
            {
                "clip_id": result["clip_id"],
                "t_start": result["t_start"],
                "t_end": result["t_end"],
                "observations": seen,
            }
        )
    return out


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")
