"""Schemas of the result queries and the live feed: the OpenAPI contract of ``api.routes.results``/``feed``.

The routes answer with the stored JSON bytes as they are (no parse, no re-serialisation), so the response
models only describe the responses; their items are the stored records of ``vstream.analysis.records``.
The listings' query parameters are ``QueryParam`` specs, parsed by hand and documented through
``openapi_extra`` (see ``parse_query``); every time-ranged collection takes ``RANGE_QUERY``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.problems import Problem
from api.schemas.keys import AUTH_ERRORS, problem_doc
from vstream.analysis.records import CaptionRecord, Event, Observation, SegmentRecord
from vstream.schema import STREAM_ID_PATTERN

# --- examples -------------------------------------------------------------------------------------------

EXAMPLE_BOX = {"x1": 112.0, "y1": 40.32, "x2": 201.6, "y2": 239.4, "label": "person"}
EXAMPLE_EVENT: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "4f1c2a9be07d3e55",
    "stream_id": "cam-lobby",
    "label": "person falls",
    "state": "closed",
    "start": 126.5,
    "end": 131.0,
    "wall_start": 1700000126.5,
    "wall_end": 1700000131.0,
    "confidence": 0.91,
    "description": "A person slips near the entrance and falls to the floor.",
    "boxes": [EXAMPLE_BOX],
    "clip_ids": ["cam-lobby-3f2a9c1d0e-0000020", "cam-lobby-3f2a9c1d0e-0000021"],
    "frame_timestamps": [126.5, 127.0, 127.5, 128.0, 130.5, 131.0],
    "model_id": "zai-org/GLM-4.5V",
    "prompt_hash": "9c1e4b7a2d",
    "version": 3,
    "updated_at": 1700000140.2,
}
EXAMPLE_SEGMENT: dict[str, Any] = {
    "segment_id": "cam-lobby-3f2a9c1d0e-0000020-s0",
    "stream_id": "cam-lobby",
    "start": 120.0,
    "end": 138.0,
    "title": "Morning arrivals",
    "description": "People enter through the main door and queue at the desk.",
    "clip_ids": ["cam-lobby-3f2a9c1d0e-0000020", "cam-lobby-3f2a9c1d0e-0000021"],
}
EXAMPLE_CAPTION: dict[str, Any] = {
    "stream_id": "cam-lobby",
    "clip_id": "cam-lobby-3f2a9c1d0e-0000021",
    "start": 126.0,
    "end": 134.0,
    "text": "A person slips near the entrance while two others wait at the desk.",
    "wall_start": 1700000126.0,
}
EXAMPLE_CURSOR = "MXwxMjYuNXw5YzFlNGI3YXw0ZjFjMmE5YmUwN2QzZTU1"
EXAMPLE_OBSERVATION: dict[str, Any] = {
    "label": "person falls",
    "start": 126.5,
    "end": 129.0,
    "confidence": 0.91,
    "description": "A person slips near the entrance and falls to the floor.",
    "boxes": [EXAMPLE_BOX],
    "wall_start": 1700000126.5,
    "wall_end": 1700000129.0,
}
EXAMPLE_FEED = (
    ": connected\n\n"
    "id: 1700000127012-0\nevent: open\n"
    'data: {"schema_version":1,"kind":"open","event":{"event_id":"4f1c2a9be07d3e55","...":"..."}}\n\n'
    ": ping\n\n"
)


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# --- response models ------------------------------------------------------------------------------------

_NEXT = (
    "Opaque cursor of the next page (pass it back as `cursor=` with the same filters), or null at the end. "
    "A page may hold fewer than `limit` items (records that expired, filters, scan budget) and still have a "
    "next page: only a null `next_cursor` ends the listing."
)


class StreamList(BaseModel):
    items: list[str] = Field(description="Stream ids with results that this key may see, sorted.")

    model_config = _examples({"items": ["cam-lobby", "cam-parking"]})


class EventPage(BaseModel):
    items: list[Event] = Field(description="Events ordered by start time, then event id.")
    next_cursor: str | None = Field(description=_NEXT)

    model_config = _examples({"items": [EXAMPLE_EVENT], "next_cursor": EXAMPLE_CURSOR})


class SegmentPage(BaseModel):
    items: list[SegmentRecord] = Field(description="Segments (chapters of the stream) ordered by start time.")
    next_cursor: str | None = Field(description=_NEXT)

    model_config = _examples({"items": [EXAMPLE_SEGMENT], "next_cursor": None})


class CaptionPage(BaseModel):
    items: list[CaptionRecord] = Field(description="One caption per clip, ordered by start time.")
    next_cursor: str | None = Field(description=_NEXT)

    model_config = _examples({"items": [EXAMPLE_CAPTION], "next_cursor": EXAMPLE_CURSOR})


class ClipEvidence(BaseModel):
    """What one clip contributed to an event: the matching observations with their boxes."""

    clip_id: str
    t_start: float = Field(description="Media seconds where the clip starts.")
    t_end: float = Field(description="Media seconds where the clip ends.")
    observations: list[Observation] = Field(description="Detections of the event's label in this clip.")

    model_config = _examples(
        {
            "clip_id": "cam-lobby-3f2a9c1d0e-0000021",
            "t_start": 126.0,
            "t_end": 134.0,
            "observations": [EXAMPLE_OBSERVATION],
        }
    )


class EventDetail(Event):
    """An event with its evidence: clip ids, frame timestamps and boxes, plus what each clip saw."""

    evidence: list[ClipEvidence] = Field(
        description="Per clip (in `clip_ids` order; clips whose result expired are left out)."
    )

    model_config = _examples(
        {**EXAMPLE_EVENT, "evidence": ClipEvidence.model_config["json_schema_extra"]["examples"]}  # type: ignore[index]
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    403: problem_doc(
        403,
        "The key may not access this stream",
        "Stream not allowed",
        "this key may not access stream 'cam-lobby'",
    ),
    422: problem_doc(
        422,
        "An invalid parameter (the detail and errors name each one)",
        "Invalid request",
        "start: start (90) is after end (30); expected start <= end",
    ),
}


def _ex(*values: Any) -> dict[str, Any]:
    """``examples`` (JSON Schema) and ``openapi_examples`` (parameter level, shown by Swagger UI)."""
    return {
        "examples": list(values),
        "openapi_examples": {f"example{k or ''}": {"value": v} for k, v in enumerate(values)},
    }


# --- parameters -----------------------------------------------------------------------------------------

StreamId = Annotated[
    str,
    Path(description="Stream id (as in the ingest job).", pattern=STREAM_ID_PATTERN, **_ex("cam-lobby")),
]
EventId = Annotated[
    str,
    Path(description="Event id.", pattern=r"^[A-Za-z0-9._-]{1,128}$", **_ex("4f1c2a9be07d3e55")),
]
# --- listing parameters, parsed by hand ------------------------------------------------------------------
# The listings are the API's hot path: declared FastAPI parameters cost a pydantic validation each per
# request (about as much as the whole query), so they are parsed here and documented as if declared.


@dataclass(frozen=True)
class QueryParam:
    name: str
    type: Literal["number", "integer", "string"]
    description: str
    example: Any
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] = ()
    repeat: bool = False
    max_length: int | None = None

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        for key in ("minimum", "maximum"):
            if getattr(self, key) is not None:
                schema[key] = getattr(self, key)
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.repeat:
            schema = {"type": "array", "items": schema}
        doc = {"name": self.name, "in": "query", "required": False, "description": self.description}
        return {**doc, "schema": schema, "examples": {"example": {"value": self.example}}}

    def parse(self, raw: str) -> Any:
        """The value, or ValueError with a message for the client."""
        if self.type == "string":
            if self.enum and raw not in self.enum:
                raise ValueError(f"{raw!r} is not one of {', '.join(map(repr, self.enum))}")
            if self.max_length is not None and len(raw) > self.max_length:
                raise ValueError(f"at most {self.max_length} characters")
            return raw
        try:
            value = float(raw) if self.type == "number" else int(raw)
        except ValueError:
            raise ValueError(
                f"{raw!r} is not {'a number' if self.type == 'number' else 'an integer'}"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"{raw!r} is not a finite number")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{raw} is less than {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{raw} is more than {self.maximum:g}")
        return value


def parse_query(query: Mapping[str, str], params: tuple[QueryParam, ...]) -> dict[str, Any]:
    """``{name: value}`` of the parameters present (repeatable ones as lists); 422 naming every bad one."""
    out: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    getlist = getattr(query, "getlist", None)
    for p in params:
        if p.name not in query:
            continue
        try:
            if p.repeat and getlist is not None:
                out[p.name] = [p.parse(v) for v in getlist(p.name)]
            else:
                out[p.name] = p.parse(query[p.name])
        except ValueError as exc:
            errors.append({"field": f"query.{p.name}", "message": str(exc)})
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Problem(422, "Invalid request", detail, errors=errors)
    return out


def openapi_params(params: tuple[QueryParam, ...]) -> dict[str, Any]:
    """``openapi_extra`` of a route that parses ``params`` itself."""
    return {"parameters": [p.openapi() for p in params]}


START = QueryParam(
    "start",
    "number",
    "Media seconds: items that end at or after this time (overlap with [start, end]).",
    120.0,
)
END = QueryParam(
    "end",
    "number",
    "Media seconds: items that start at or before this time (overlap with [start, end]).",
    180.0,
)
LIMIT = QueryParam(
    "limit",
    "integer",
    "Page size: 1 to the server's page_limit_max (500 by default); 100 if left out.",
    100,
    1,
)
CURSOR = QueryParam(
    "cursor", "string", "`next_cursor` of the previous page (same filters).", EXAMPLE_CURSOR, max_length=4096
)
RANGE_QUERY = (START, END, LIMIT, CURSOR)
EVENT_QUERY = (
    START,
    END,
    QueryParam(
        "wall_start",
        "number",
        "Unix seconds: events whose wall-clock span ends at or after this time (live streams; events "
        "without wall-clock times are left out when a wall filter is given).",
        1700000100.0,
    ),
    QueryParam(
        "wall_end",
        "number",
        "Unix seconds: events whose wall-clock span starts at or before this time.",
        1700000200.0,
    ),
    QueryParam(
        "label",
        "string",
        "Only events with this label (exact; repeat for any of several).",
        ["person falls"],
        repeat=True,
    ),
    QueryParam("min_confidence", "number", "Only events at least this confident.", 0.6, 0.0, 1.0),
    QueryParam(
        "state", "string", "Only events still open, or only closed ones.", "closed", enum=("open", "closed")
    ),
    LIMIT,
    CURSOR,
)

# --- live feed parameters -------------------------------------------------------------------------------

FEED_ID_PATTERN = r"^\d{1,20}(-\d{1,20})?$"
LastEventIdHeader = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        pattern=FEED_ID_PATTERN,
        description="Resume after this message id (browsers send it when they reconnect).",
        **_ex("1700000127012-0"),
    ),
]
LastEventIdQuery = Annotated[
    str | None,
    Query(
        description="Same as the Last-Event-ID header, for clients that cannot set headers.",
        pattern=FEED_ID_PATTERN,
        **_ex("1700000127012-0"),
    ),
]
Since = Annotated[
    str | None,
    Query(
        description="Start after this message id (`0` replays what the feed still holds); default: from now.",
        pattern=FEED_ID_PATTERN,
        **_ex("0"),
    ),
]
StreamFilter = Annotated[
    list[str] | None,
    Query(
        description="Only these streams (repeat, or comma-separated); each must be allowed for the key.",
        **_ex(["cam-lobby", "cam-parking"]),
    ),
]
FEED_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text/event-stream: `id:` (resume position), `event:` (open, update or close) "
        "and `data:` (an EventChange as JSON: kind and the event as it is now) per change; `: ping` "
        "comment lines while idle.",
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": EXAMPLE_FEED}},
    },
    **ERRORS,
}
