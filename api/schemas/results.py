"""Schemas of the result queries and the live feed: the OpenAPI contract of ``api.routes.results``/``feed``.

The routes answer with the stored JSON bytes as they are (no parse, no re-serialisation), so these models
only describe the responses; the item models are the stored records of ``vstream.analysis.records``.
Query parameters are declared here once (``Annotated`` aliases with descriptions and examples) so every
time-ranged collection (events, segments, captions, and later summaries/chapters/highlights) takes the
same parameters.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

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
Start = Annotated[
    float | None,
    Query(
        description="Media seconds: items that end at or after this time (overlap with [start, end]).",
        allow_inf_nan=False,
        **_ex(120.0),
    ),
]
End = Annotated[
    float | None,
    Query(
        description="Media seconds: items that start at or before this time (overlap with [start, end]).",
        allow_inf_nan=False,
        **_ex(180.0),
    ),
]
WallStart = Annotated[
    float | None,
    Query(
        description="Unix seconds: events whose wall-clock span ends at or after this time (live streams; "
        "events without wall-clock times are left out when a wall filter is given).",
        allow_inf_nan=False,
        **_ex(1700000100.0),
    ),
]
WallEnd = Annotated[
    float | None,
    Query(
        description="Unix seconds: events whose wall-clock span starts at or before this time.",
        allow_inf_nan=False,
        **_ex(1700000200.0),
    ),
]
Labels = Annotated[
    list[str] | None,
    Query(
        description="Only events with this label (exact; repeat for any of several).",
        **_ex(["person falls"]),
    ),
]
MinConfidence = Annotated[
    float | None,
    Query(description="Only events at least this confident.", ge=0.0, le=1.0, **_ex(0.6)),
]
State = Annotated[
    Literal["open", "closed"] | None,
    Query(description="Only events still open, or only closed ones.", **_ex("closed")),
]
Limit = Annotated[
    int,
    Query(description="Page size, 1 to the server's page_limit_max (500 by default).", ge=1, **_ex(100)),
]
Cursor = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page (same filters).",
        max_length=4096,
        **_ex(EXAMPLE_CURSOR),
    ),
]

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
