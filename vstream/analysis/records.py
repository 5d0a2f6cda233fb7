"""Stored and published result records (schema version 1); times are absolute stream media seconds."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from vstream.analysis.results import Box
from vstream.vocabulary import Task, Wire

SCHEMA_VERSION: Literal[1] = 1


class Observation(Wire):
    """One detection from one clip, mapped to stream time."""

    label: str
    start: float
    end: float
    confidence: float
    description: str = ""
    boxes: list[Box] = Field(default_factory=list)
    wall_start: float | None = None
    wall_end: float | None = None


class SegmentRecord(Wire):
    segment_id: str
    stream_id: str
    start: float
    end: float
    title: str = ""
    description: str = ""
    clip_ids: list[str] = Field(default_factory=list)


class CaptionRecord(Wire):
    stream_id: str
    clip_id: str
    start: float
    end: float
    text: str
    wall_start: float | None = None


class ClipResult(Wire):
    """Everything one model run produced for one clip; keyed by clip id + model + prompt hash."""

    schema_version: Literal[1] = SCHEMA_VERSION
    stream_id: str
    clip_id: str
    index: int
    task: Task
    model_id: str
    prompt_hash: str
    thinking: bool
    t_start: float
    t_end: float
    wall_start: float | None = None
    ok: bool
    error: str | None = None
    observations: list[Observation] = Field(default_factory=list)
    segments: list[SegmentRecord] = Field(default_factory=list)
    caption: CaptionRecord | None = None
    raw: str = ""
    warnings: list[str] = Field(default_factory=list)
    model_seconds: float = 0.0
    visual_tokens: int = 0
    created_at: float = Field(default_factory=time.time)

    @property
    def version(self) -> str:
        return f"{self.model_id}|{self.prompt_hash}"


EventState = Literal["open", "closed"]


class Event(Wire):
    """An event tracked across clips: one record however many clips saw it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    stream_id: str
    label: str
    state: EventState
    start: float
    end: float
    wall_start: float | None = None
    wall_end: float | None = None
    confidence: float
    description: str = ""
    boxes: list[Box] = Field(default_factory=list)
    clip_ids: list[str] = Field(default_factory=list)
    frame_timestamps: list[float] = Field(
        default_factory=list, description="Evidence: frames inside the event."
    )
    model_id: str = ""
    prompt_hash: str = ""
    thumbnail_t: float | None = Field(
        None, description="Media time of the key frame (GET .../thumbnail.jpg)."
    )
    version: int = Field(1, description="Bumped on every update, for feeds and caches.")
    updated_at: float = Field(default_factory=time.time)


class EventChange(Wire):
    """What the live feed carries: the event as it is after an open, update or close."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["open", "update", "close"]
    event: Event
    thumbnail_jpeg_b64: str | None = Field(
        None,
        description="Key frame of the event (JPEG, base64), on open and on updates that raise confidence.",
    )
