"""Analysis-job schemas: the submission body, the job view, a page of jobs."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from vstream.jobs import Status
from vstream.schema import STREAM_ID_PATTERN, ClipParams, GateParams
from vstream.vocabulary import Task

EventType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
_STREAM_ID = re.compile(STREAM_ID_PATTERN)
DEFAULT_SPORT = "soccer"  # preset 'sports' without a sport; jobs store sport None then

_PARAMS_EXAMPLE = {"fps": 2.0, "clip_seconds": 8.0, "overlap_seconds": 2.0, "max_side": 448}
JOB_CREATE_EXAMPLES: dict[str, dict[str, Any]] = {
    "live stream, events": {
        "stream_id": "lobby",
        "source": "rtsp://user:secret@cam1.example.com:554/stream1",
        "task": "events",
        "event_types": ["person falls", "door left open"],
        "params": _PARAMS_EXAMPLE,
        "gate": {"enabled": True, "threshold": 4.0},
    },
    "file under a media root, segments": {
        "stream_id": "warehouse-2025-06-01",
        "source": "warehouse/2025-06-01.mp4",
        "task": "segments",
    },
}
_PROGRESS_EXAMPLE: dict[str, Any] = {
    "clips_acked": 12,
    "media_seconds": 72.0,
    "clips_analysed": 10,
    "clips_failed": 1,
    "clips_dead_lettered": 0,
    "analysis_complete": False,
}
_JOB_EXAMPLE: dict[str, Any] = {
    "job_id": "job-5f0c6d3e9a7b4c1d8e2f3a4b5c6d7e8f",
    "stream_id": "lobby",
    "source": "rtsp://cam1.example.com:554/stream1",
    "task": "events",
    "event_types": ["person falls", "door left open"],
    "params": _PARAMS_EXAMPLE,
    "gate": {"enabled": True, "threshold": 4.0},
    "realtime": False,
    "status": "running",
    "error": "",
    "attempts": 1,
    "progress": _PROGRESS_EXAMPLE,
    "submitted_at": 1767225600.0,
    "updated_at": 1767225672.5,
    "live": True,
}


class JobCreate(BaseModel):
    """Analyse a file or a live stream: it is cut into clips that GPU workers analyse."""

    stream_id: str = Field(
        description="Your name for the stream; results are stored under it. 1-128 letters, digits, "
        "'.', '_' or '-', starting with a letter or digit.",
        json_schema_extra={"pattern": STREAM_ID_PATTERN},
    )
    source: str = Field(
        min_length=1,
        max_length=4096,
        description="rtsp/rtmp/http(s)/srt URL, or a path (or file:// URL) under the server's media roots.",
    )
    task: Task = Field("caption", description="What the model extracts from each clip.")
    event_types: list[EventType] = Field(
        default_factory=list, max_length=32, description="Event labels to detect (task 'events' only)."
    )
    params: ClipParams | None = Field(
        None, description="How the source is cut into clips; omitted = the server's clip settings."
    )
    gate: GateParams = Field(GateParams(), description="Skip clips without motion.")
    realtime: bool = Field(False, description="Replay a file at real speed, as if it were live.")
    preset: Literal["surveillance", "sports", "lecture"] | None = Field(
        None,
        description="A user journey's defaults for task, event_types, params and gate (given fields win).",
    )
    sport: str | None = Field(None, description="With preset 'sports': soccer, basketball or tennis.")
    retention_s: int | None = Field(
        None, ge=60, le=366 * 86400, description="Keep this stream's results this long (default: server's)."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": list(JOB_CREATE_EXAMPLES.values())},
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        from vstream.presets import preset

        try:
            p = preset(
                str(data["preset"]),
                sport=data.get("sport") or DEFAULT_SPORT,
                event_types=tuple(data.get("event_types") or ()),
            )
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        filled = dict(data)
        filled.setdefault("task", p.task)
        if p.task == "events":
            filled["event_types"] = list(p.event_types)
        filled.setdefault("params", p.params.model_dump())
        filled.setdefault("gate", p.gate.model_dump())
        return filled

    @field_validator("stream_id")
    @classmethod
    def _stream_id(cls, v: str) -> str:
        if not _STREAM_ID.fullmatch(v):
            raise ValueError("use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _types_match_task(self) -> JobCreate:
        if self.task == "events" and not self.event_types:
            raise ValueError("task 'events' needs at least one entry in event_types, e.g. ['person falls']")
        if self.task != "events" and self.event_types:
            raise ValueError(f"event_types only apply to task 'events', not {self.task!r}; remove them")
        return self


class JobProgress(BaseModel):
    clips_acked: int = Field(description="Clips Kafka has acknowledged (for this stream and clip params).")
    media_seconds: float = Field(description="About how much media those clips cover.")
    clips_analysed: int = Field(0, description="Of those clips, analysed with a usable answer.")
    clips_failed: int = Field(
        0, description="Analysed, but the answer was unusable (unparseable, model error): see each result."
    )
    clips_dead_lettered: int = Field(
        0, description="Given up on after repeated failures (on the dead-letter topic, with the error)."
    )
    analysis_complete: bool = Field(
        False,
        description="The source's final clip is analysed or dead-lettered, and so is every clip before it: "
        "results are final. Never true for a live stream.",
    )

    model_config = ConfigDict(json_schema_extra={"examples": [_PROGRESS_EXAMPLE]})


class JobView(BaseModel):
    job_id: str
    stream_id: str
    source: str = Field(description="The source, with any user:password removed.")
    task: Task
    event_types: list[str]
    params: ClipParams
    gate: GateParams
    realtime: bool
    status: Status = Field(
        description="queued, running, retry (waits to retry after an error), paused, done, failed, cancelled."
    )
    error: str = Field("", description="The last error, if any.")
    attempts: int = Field(0, description="Times a worker started the job.")
    progress: JobProgress
    submitted_at: float = Field(description="Unix seconds.")
    updated_at: float | None = Field(None, description="Unix seconds of the last status change.")
    live: bool = Field(description="True for a network stream, false for a file.")

    model_config = ConfigDict(json_schema_extra={"examples": [_JOB_EXAMPLE]})


class JobList(BaseModel):
    items: list[JobView]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next page; null on the last page."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_JOB_EXAMPLE], "next_cursor": "WzE3NjcyMjU2MDAuMCwgImpvYi0xIl0"}]
        }
    )
