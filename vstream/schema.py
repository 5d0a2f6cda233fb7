"""Wire schemas (Kafka messages), each with a schema version.

A clip travels as a small binary envelope rather than JSON with base64 frames, so Kafka's 1 MiB default
message limit carries about a third more JPEG data:

    b"VSC1" | u32 big-endian header length | header JSON (ClipMessage without frame bytes) | frame bytes...
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import time
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from vstream.vocabulary import Task, Wire

SCHEMA_VERSION: Literal[1] = 1
_MAGIC = b"VSC1"
_HEADER = struct.Struct(">I")
STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class SchemaError(ValueError):
    """A message that does not follow the wire schema."""


class ClipParams(Wire):
    """How a source is cut into clips; its hash is part of every clip id."""

    fps: float = Field(2.0, gt=0, le=30)
    clip_seconds: float = Field(8.0, gt=0, le=600)
    overlap_seconds: float = Field(2.0, ge=0)
    max_side: int = Field(448, ge=28, le=4032)

    @model_validator(mode="after")
    def _check(self) -> ClipParams:
        if self.overlap_seconds >= self.clip_seconds:
            raise ValueError("overlap_seconds must be smaller than clip_seconds")
        if self.clip_seconds * self.fps < 2:
            raise ValueError("clip_seconds * fps must give at least 2 frames")
        if self.max_side % 28:
            raise ValueError("max_side must be a multiple of 28 (GLM-4.5V: patch 14 x merge 2)")
        return self

    @property
    def step_seconds(self) -> float:
        return self.clip_seconds - self.overlap_seconds

    @property
    def params_hash(self) -> str:
        canon = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()[:10]


def clip_id_for(stream_id: str, params: ClipParams, index: int) -> str:
    """Deterministic: re-ingesting the same source with the same parameters yields the same ids."""
    return f"{stream_id}-{params.params_hash}-{index:07d}"


_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]+@")


def redact_text(text: str) -> str:
    """Drop ``user:password@`` from every URL inside a message (errors quote the URL they failed on)."""
    return _CREDENTIALS.sub(r"\1", text)


def redact_url(source: str) -> str:
    """Drop user:password from a URL so it can be logged and stored."""
    parts = urlsplit(source)
    if parts.username is None and parts.password is None:
        return source
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class ClipGap(Wire):
    """What the source lost just before this clip (a reconnect, a stall, a frame-size change)."""

    reason: Literal["reconnect", "stall", "discontinuity", "resize"]
    t_before: float | None = Field(None, description="Media seconds of the last frame before the gap.")
    t_after: float = Field(description="Media seconds of the first frame after the gap.")
    seconds: float = Field(ge=0, description="Media time the gap lasted (0 for a size change).")


class ClipMessage(Wire):
    """One clip: an even number (>= 2) of resized frames with exact timestamps.

    Version 2 added ``gap``; a clip without one is still written as version 1, so readers that predate
    it keep reading every clip that does not need it.
    """

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    stream_id: str = Field(pattern=STREAM_ID_PATTERN)
    clip_id: str
    index: int = Field(ge=0)
    params: ClipParams
    t_start: float = Field(ge=0, description="Media seconds of the window start.")
    t_end: float = Field(ge=0, description="Media seconds the clip covers up to.")
    timestamps: list[float] = Field(description="Media seconds of each frame (from the source PTS).")
    wall_timestamps: list[float] | None = Field(None, description="Unix seconds of each frame (live only).")
    clock: Literal["pts", "arrival"] = Field(description="Where the timestamps come from.")
    width: int = Field(ge=28)
    height: int = Field(ge=28)
    encoding: Literal["jpeg"] = "jpeg"
    frames: list[bytes] = Field(
        default_factory=list, description="Encoded frames; empty when payload_ref is set."
    )
    payload_ref: str | None = Field(None, description="Claim-check reference to the full message.")
    source: str = ""
    live: bool = False
    last: bool = Field(False, description="Final clip of a finite source.")
    gap: ClipGap | None = Field(None, description="Footage missing just before this clip (live).")
    task: Task = Field(
        "caption", description="Analysis the GPU workers run."
    )
    event_types: list[str] = Field(default_factory=list, description="Event labels for task 'events'.")
    preset: Literal["surveillance", "sports", "lecture"] | None = None
    retention_s: int | None = Field(
        None, ge=60, description="TTL of this stream's results (None: the default)."
    )
    produced_at: float = Field(default_factory=time.time)

    @field_validator("timestamps")
    @classmethod
    def _even(cls, v: list[float]) -> list[float]:
        if len(v) < 2 or len(v) % 2:
            raise ValueError(f"a clip needs an even number (>= 2) of frames, got {len(v)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ClipMessage:
        if self.frames and len(self.frames) != len(self.timestamps):
            raise ValueError("frames and timestamps differ in length")
        if not self.frames and self.payload_ref is None:
            raise ValueError("a clip carries frames or a payload_ref")
        if self.wall_timestamps is not None and len(self.wall_timestamps) != len(self.timestamps):
            raise ValueError("wall_timestamps and timestamps differ in length")
        if self.t_end < self.t_start:
            raise ValueError("t_end < t_start")
        if self.gap is not None and self.schema_version < 2:
            raise ValueError("a clip with a gap is schema_version 2")
        return self

    @property
    def n_frames(self) -> int:
        return len(self.timestamps)

    @property
    def payload_bytes(self) -> int:
        return sum(len(f) for f in self.frames)


def encode_clip(msg: ClipMessage) -> bytes:
    header = msg.model_dump(mode="json", exclude={"frames"})
    header["frame_sizes"] = [len(f) for f in msg.frames]
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([_MAGIC, _HEADER.pack(len(head)), head, *msg.frames])


def decode_clip(data: bytes) -> ClipMessage:
    """Parse an envelope; raise SchemaError with the reason on anything malformed."""
    if len(data) < 8 or data[:4] != _MAGIC:
        raise SchemaError("not a vstream clip envelope (bad magic)")
    (n,) = _HEADER.unpack_from(data, 4)
    if 8 + n > len(data):
        raise SchemaError("truncated clip header")
    try:
        header = json.loads(data[8 : 8 + n])
        sizes = header.pop("frame_sizes")
    except (ValueError, KeyError, AttributeError) as exc:
        raise SchemaError(f"bad clip header: {exc}") from exc
    if not isinstance(sizes, list) or sum(sizes) != len(data) - 8 - n:
        raise SchemaError("frame sizes do not match the payload")
    frames, pos = [], 8 + n
    for size in sizes:
        frames.append(data[pos : pos + size])
        pos += size
    try:
        return ClipMessage(**header, frames=frames)
    except ValueError as exc:
        raise SchemaError(f"invalid clip: {exc}") from exc


class GateParams(Wire):
    """Skip clips in which nothing moves (cheap frame differencing on tiny grey frames)."""

    enabled: bool = False
    threshold: float = Field(
        4.0, gt=0, description="Mean absolute grey-level difference (0..255) that counts as motion."
    )


_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class IngestRequest(Wire):
    """Ask an ingest worker to cut a source into clips."""

    schema_version: Literal[1] = SCHEMA_VERSION
    job_id: str = Field(pattern=_JOB_ID.pattern)
    stream_id: str = Field(pattern=STREAM_ID_PATTERN)
    source: str = Field(min_length=1, max_length=4096)
    params: ClipParams = ClipParams()
    gate: GateParams = GateParams()
    realtime: bool = Field(False, description="Replay a file at real speed, as if it were live.")
    task: Task = Field(
        "caption", description="Analysis the GPU workers run."
    )
    event_types: list[str] = Field(default_factory=list)
    preset: Literal["surveillance", "sports", "lecture"] | None = Field(None, description="The user journey.")
    sport: str | None = Field(None, description="Sports preset: which sport's highlight table to use.")
    retention_s: int | None = Field(
        None, ge=60, description="TTL of this stream's results (None: the default)."
    )
    submitted_at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _events_need_types(self) -> IngestRequest:
        if self.task == "events" and not [e for e in self.event_types if e.strip()]:
            raise ValueError("task 'events' needs at least one event type")
        return self


class IngestError(Wire):
    """Published when an ingest job fails; the worker itself keeps running."""

    schema_version: Literal[1] = SCHEMA_VERSION
    job_id: str
    stream_id: str
    source: str
    error: str
    fatal: bool = Field(description="True when retrying cannot help (bad file, unsupported codec).")
    at: float = Field(default_factory=time.time)
