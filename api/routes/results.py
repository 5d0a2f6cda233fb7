"""Result queries: streams, events (time range and filters), one event with its evidence, segments, captions.

Every time-ranged collection is a Redis sorted set scored by the records' start (media seconds), written by
``vstream.store.ResultStore``: of record ids whose JSON lies under its own key (events, segments), or of
the record JSON itself (captions). One page is one Redis call, the Lua script ``PAGE_LUA``, which

* reads the set by score from ``start - span`` to ``end``, where ``span`` is the longest record of that
  collection in the stream (:func:`spans_key`), so every record overlapping ``[start, end]`` is found;
  records starting before ``start`` are kept only if they end at or after it;
* pages by (score, member) after the cursor: the position of the last record *read*, so pages never repeat
  or skip a record, whatever is added meanwhile; records sharing a start time are ordered by member;
* returns the stored JSON of the page joined with commas: Python adds the brackets and the cursor and never
  parses a record. Records are decoded (by Redis' cjson) only where needed: those starting before
  ``start``, and all of them under a label, confidence, state or wall-clock filter; such a scan stops after
  ``SCAN_BUDGET`` records with a cursor to go on from (a page may then be short, even empty).

Why one script: per request, each redis-py command costs about as much CPU as a whole ``/ping``, and
FastAPI's parameter validation as much again, so the listings parse their query string by hand
(``api.schemas.results.parse_query``) and make one round trip. ``bench/api.py`` measures it.

Extension point: another time-ranged collection (summaries, chapters, highlights) is one :class:`Collection`
plus a route calling :func:`collection_page` with ``RANGE_QUERY`` parameters, like segments below.
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

from fastapi import APIRouter, Request, Response
from redis.exceptions import NoScriptError

from api.deps import Caller, Res, load_event, require_stream
from api.problems import Problem
from api.schemas.keys import AUTH_ERRORS, problem_doc
from api.schemas.results import (
    ERRORS,
    EVENT_QUERY,
    RANGE_QUERY,
    CaptionPage,
    EventDetail,
    EventId,
    EventPage,
    SegmentPage,
    StreamId,
    StreamList,
    openapi_params,
    parse_query,
)
from vstream.names import Keys
from vstream.store import version_key

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["results"])

DEFAULT_LIMIT = 100
SCAN_BUDGET = 1000  # records one request may read (~3 ms of Redis time when it decodes them all)
MAX_EVIDENCE_CLIPS = 100
MAX_CLIP_SECONDS = 600.0  # ClipParams.clip_seconds <= 600: no caption (one per clip) spans more
Position = tuple[float, bytes]  # (score, member) of the last record read
Doc = dict[str, Any]


@dataclass(frozen=True)
class Collection:
    """A time-ranged collection: a sorted set of members by start time, per stream."""

    name: str
    index: Callable[[Keys, str], str]  # the sorted set of one stream
    # (keys, stream, member) -> the key of a member's JSON; None: members are the JSON
    body: Callable[[Keys, str, str], str] | None
    max_span: float | None = None  # bound on end - start while the stream has no recorded span


EVENTS = Collection("events", Keys.events, Keys.event)
SEGMENTS = Collection("segments", Keys.segments, Keys.segment)
CAPTIONS = Collection("captions", Keys.captions, None, MAX_CLIP_SECONDS)


def spans_key(keys: Keys, stream_id: str) -> str:
    return keys.spans(stream_id)


@dataclass(frozen=True)
class RangeQuery:
    start: float | None
    end: float | None
    limit: int
    cursor: str | None
    filters: str = ""  # JSON of the record filters for the script ("" for none)


# --- routes ---------------------------------------------------------------------------------------------


@router.get("/streams", response_model=StreamList, responses=AUTH_ERRORS, summary="List streams")
async def list_streams(res: Res, caller: Caller) -> StreamList:
    """Stream ids that have results and that this key may see."""
    members = cast(set[bytes], await res.redis.smembers(res.keys.streams))
    return StreamList(items=sorted(s for s in (m.decode() for m in members) if caller.may_see(s)))


@router.get(
    "/streams/{stream_id}/events",
    responses={200: {"model": EventPage}, **ERRORS},
    openapi_extra=openapi_params(EVENT_QUERY),
    summary="List events",
)
async def list_events(request: Request, res: Res, caller: Caller, stream_id: StreamId) -> Response:
    """Events overlapping a media-time and/or wall-clock range, by start time, with optional filters."""
    require_stream(caller, stream_id)
    p = parse_query(request.query_params, EVENT_QUERY)
    check_range("start", p.get("start"), "end", p.get("end"))
    check_range("wall_start", p.get("wall_start"), "wall_end", p.get("wall_end"))
    query = RangeQuery(p.get("start"), p.get("end"), page_limit(res, p), p.get("cursor"), event_filters(p))
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
    summary="Get one event with its evidence",
)
async def get_event(res: Res, caller: Caller, event_id: EventId) -> Response:
    """One event with its evidence: clip ids, frame timestamps, boxes, and what each clip saw."""
    raw = await load_event(res, event_id)
    if raw is None:
        raise Problem(404, "Event not found", f"no event {event_id!r} (unknown, or expired)")
    doc = json.loads(raw)
    require_stream(caller, doc["stream_id"])
    doc["evidence"] = await _evidence(res, doc)
    return _json(json.dumps(doc, separators=(",", ":")).encode())


@router.get(
    "/streams/{stream_id}/segments",
    responses={200: {"model": SegmentPage}, **ERRORS},
    openapi_extra=openapi_params(RANGE_QUERY),
    summary="List segments",
)
async def list_segments(request: Request, res: Res, caller: Caller, stream_id: StreamId) -> Response:
    """Segments (the stream's chapters) overlapping a media-time range, by start time."""
    return await _range_route(request, res, caller, SEGMENTS, stream_id)


@router.get(
    "/streams/{stream_id}/captions",
    responses={200: {"model": CaptionPage}, **ERRORS},
    openapi_extra=openapi_params(RANGE_QUERY),
    summary="List captions",
)
async def list_captions(request: Request, res: Res, caller: Caller, stream_id: StreamId) -> Response:
    """Clip captions overlapping a media-time range, by start time."""
    return await _range_route(request, res, caller, CAPTIONS, stream_id)


async def _range_route(
    request: Request, res: Res, caller: Caller, coll: Collection, stream_id: str
) -> Response:
    require_stream(caller, stream_id)
    p = parse_query(request.query_params, RANGE_QUERY)
    check_range("start", p.get("start"), "end", p.get("end"))
    query = RangeQuery(p.get("start"), p.get("end"), page_limit(res, p), p.get("cursor"))
    return await collection_page(res, coll, stream_id, query)


# --- validation -----------------------------------------------------------------------------------------


def _invalid(field: str, message: str) -> Problem:
    errors = [{"field": f"query.{field}", "message": message}]
    return Problem(422, "Invalid request", f"query.{field}: {message}", errors=errors)


def check_range(lo_name: str, lo: float | None, hi_name: str, hi: float | None) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise _invalid(
            lo_name, f"{lo_name} ({lo:g}) is after {hi_name} ({hi:g}); expected {lo_name} <= {hi_name}"
        )


def page_limit(res: Res, params: dict[str, Any]) -> int:
    top = res.settings.api.page_limit_max
    limit: int | None = params.get("limit")
    if limit is None:
        return min(DEFAULT_LIMIT, top)
    if limit > top:
        raise _invalid("limit", f"at most {top} items per page (got {limit})")
    return limit


def event_filters(p: dict[str, Any]) -> str:
    """The script's record filters as JSON ("" when there are none: the fast path)."""
    f: dict[str, Any] = {k: p[k] for k in ("min_confidence", "state", "wall_start", "wall_end") if k in p}
    if p.get("label"):
        f["labels"] = dict.fromkeys(sorted(p["label"]), True)
    return json.dumps(f, sort_keys=True, separators=(",", ":")) if f else ""


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


# --- one page -------------------------------------------------------------------------------------------


async def collection_page(res: Res, coll: Collection, stream_id: str, q: RangeQuery) -> Response:
    """One page of ``coll`` in ``stream_id``: the stored JSON of its records, and the next cursor."""
    fingerprint = _fingerprint(coll, stream_id, q)
    pos = decode_cursor(q.cursor, fingerprint) if q.cursor else None
    args = (
        coll.name,
        "" if q.start is None else repr(q.start),
        "+inf" if q.end is None else repr(q.end),
        "" if pos is None else repr(pos[0]),
        b"" if pos is None else pos[1],
        q.limit,
        "" if coll.body is None else coll.body(res.keys, stream_id, ""),  # in the stream's slot
        "" if coll.max_span is None else repr(coll.max_span),
        SCAN_BUDGET,
        q.filters,
    )
    keys = (coll.index(res.keys, stream_id), spans_key(res.keys, stream_id))
    items, score, member, more = await _page(res, keys, args)
    cursor = encode_cursor((float(score), member), fingerprint).encode() if more else None
    tail = b'"' + cursor + b'"}' if cursor else b"null}"
    return _json(b'{"items":[' + items + b'],"next_cursor":' + tail)


async def _page(res: Res, keys: tuple[str, str], args: tuple[Any, ...]) -> list[Any]:
    try:
        reply = await res.redis.evalsha(_PAGE_SHA, 2, *keys, *args)
    except NoScriptError:  # a restarted or flushed Redis: load it once more
        await res.redis.script_load(PAGE_LUA)
        reply = await res.redis.evalsha(_PAGE_SHA, 2, *keys, *args)
    return cast(list[Any], reply)


PAGE_LUA = """
-- KEYS: [1] the sorted set, [2] the stream's spans (collection name -> longest end - start)
-- ARGV: [1] collection name, [2] start or '', [3] end or '+inf', [4] cursor score or '', [5] cursor member,
--   [6] limit, [7] key prefix of a member's JSON or '' (members are the JSON), [8] span bound when none
--   is recorded or '' (none), [9] budget of records read, [10] record filters as JSON or ''
-- Returns {the page's records joined by ',', score, member of the last record read, 1 if any remain}
local start, hi, cscore, cmember = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local limit, prefix, budget = tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[9])
local f = nil
if ARGV[10] ~= '' then f = cjson.decode(ARGV[10]) end

local min = '-inf'
if start then
  local span = redis.call('ZSCORE', KEYS[2], ARGV[1]) or ARGV[8]
  if span ~= '' then min = string.format('%.17g', start - tonumber(span)) end
end
local skipping = false  -- records at or before the cursor, which share its score, come first: skip them
if cscore and (min == '-inf' or cscore >= tonumber(min)) then min, skipping = ARGV[4], true end

local function not_after_cursor(member, score)  -- (score, member) <= cursor, members compared bytewise
  if tonumber(score) ~= cscore then return false end
  if member == cmember then return true end
  for i = 1, math.min(#member, #cmember) do
    local a, b = string.byte(member, i), string.byte(cmember, i)
    if a ~= b then return a < b end
  end
  return #member < #cmember
end

local function keep(body, score)
  local before = start and score < start
  if not before and not f then return true end
  local doc = cjson.decode(body)
  if before and doc['end'] < start then return false end
  if not f then return true end
  if f.labels and not f.labels[doc.label] then return false end
  if f.min_confidence and doc.confidence < f.min_confidence then return false end
  if f.state and doc.state ~= f.state then return false end
  local ws, we = doc.wall_start, doc.wall_end  -- cjson.null (not a number) without a wall clock
  if f.wall_start and not (type(we) == 'number' and we >= f.wall_start) then return false end
  if f.wall_end and not (type(ws) == 'number' and ws <= f.wall_end) then return false end
  return true
end

local items, n, scanned, offset = {}, 0, 0, 0
local last_score, last_member = ARGV[4], ARGV[5]
local chunk = limit + 1 + (skipping and 1 or 0)  -- one more than the page: are there more?
while true do
  local got = redis.call('ZRANGE', KEYS[1], min, hi, 'BYSCORE', 'LIMIT', offset, chunk, 'WITHSCORES')
  offset = offset + #got / 2
  local bodies = nil
  if prefix ~= '' and #got > 0 then
    local names = {}
    for i = 1, #got, 2 do names[#names + 1] = prefix .. got[i] end
    bodies = redis.call('MGET', unpack(names))
  end
  for i = 1, #got, 2 do
    local member, score = got[i], got[i + 1]
    if not (skipping and not_after_cursor(member, score)) then
      skipping = false
      if n == limit or scanned == budget then
        return {table.concat(items, ','), last_score, last_member, 1}
      end
      scanned = scanned + 1
      last_score, last_member = score, member
      local body = member
      if bodies then body = bodies[(i + 1) / 2] end  -- false: expired since it was indexed
      if body and keep(body, tonumber(score)) then
        n = n + 1
        items[n] = body
      end
    end
  end
  if #got < chunk * 2 then return {table.concat(items, ','), last_score, last_member, 0} end
  chunk = math.min(chunk * 2, 512)
end
"""
_PAGE_SHA = hashlib.sha1(PAGE_LUA.encode()).hexdigest()


# --- evidence -------------------------------------------------------------------------------------------


async def _evidence(res: Res, event: Doc) -> list[Doc]:
    """What each clip of the event saw: its observations of the event's label inside the event's span."""
    version = version_key(event["model_id"], event["prompt_hash"])
    clip_ids = event["clip_ids"][:MAX_EVIDENCE_CLIPS]
    if not clip_ids:
        return []
    stream_id = event["stream_id"]
    raws = await res.redis.mget([res.keys.result(stream_id, c, version) for c in clip_ids])
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
        clip = {k: result[k] for k in ("clip_id", "t_start", "t_end")}
        out.append({**clip, "observations": seen})
    return out


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")
