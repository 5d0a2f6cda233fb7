"""From per-clip model answers to a stream timeline.

The model sees clip-relative times (GLM prints whole seconds since the clip start before each frame pair),
so a result is mapped to stream time by adding the clip's start. Overlapping clips see the same moment
twice: :class:`EventTracker` merges detections of one label that touch in time into one event with a
stable id and a lifecycle, and :class:`SegmentStitcher` turns per-clip segments into one gap-free,
non-overlapping sequence.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from vstream.analysis.records import Event, EventChange, Observation, SegmentRecord
from vstream.analysis.results import ParsedOutput
from vstream.schema import ClipMessage


def _wall(clip: ClipMessage, t: float) -> float | None:
    """Wall-clock time of stream time ``t`` by interpolating the clip's frame timestamps."""
    if clip.wall_timestamps is None:
        return None
    return clip.wall_timestamps[0] + (t - clip.timestamps[0])


def observations(parsed: ParsedOutput, clip: ClipMessage) -> list[Observation]:
    base, end_cap = clip.t_start, clip.t_end
    out = []
    for d in parsed.detections:
        start, end = min(base + d.start_s, end_cap), min(base + d.end_s, end_cap)
        out.append(
            Observation(
                label=d.label,
                start=round(start, 3),
                end=round(max(start, end), 3),
                confidence=d.confidence,
                description=d.description,
                boxes=d.boxes,
                wall_start=_wall(clip, start),
                wall_end=_wall(clip, end),
            )
        )
    return out


def _event_id(stream_id: str, label: str, clip_id: str, n: int) -> str:
    return hashlib.sha256(f"{stream_id}|{label}|{clip_id}|{n}".encode()).hexdigest()[:16]


class TrackerState(BaseModel):
    """Per-stream state that must survive a worker restart (stored in Redis with the results)."""

    model_config = ConfigDict(extra="forbid")

    last_index: int = -1
    open_events: dict[str, Event] = Field(default_factory=dict)
    last_segment: SegmentRecord | None = None


@dataclass
class TrackerConfig:
    # Longer than the clip step (6 s by default), so a detection missed in one clip does not re-alert.
    join_gap_s: float = 8.0  # detections of one label this close in time are the same event
    close_after_s: float = 10.0  # hysteresis: unseen for this long (in stream time) closes the event


@dataclass
class ClipChanges:
    changes: list[EventChange] = field(default_factory=list)
    segments: list[SegmentRecord] = field(default_factory=list)


class EventTracker:
    """Applies one clip's observations to the open events of a stream, in clip order."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()

    def apply(
        self, state: TrackerState, clip: ClipMessage, obs: list[Observation], model_id: str, prompt_hash: str
    ) -> list[EventChange]:
        changes: list[EventChange] = []
        seen: set[str] = set()
        for n, o in enumerate(sorted(obs, key=lambda o: (o.start, o.label))):
            match = self._match(state, o)
            if match is None:
                event = Event(
                    event_id=_event_id(clip.stream_id, o.label, clip.clip_id, n),
                    stream_id=clip.stream_id,
                    label=o.label,
                    state="open",
                    start=o.start,
                    end=o.end,
                    wall_start=o.wall_start,
                    wall_end=o.wall_end,
                    confidence=o.confidence,
                    description=o.description,
                    boxes=o.boxes,
                    clip_ids=[clip.clip_id],
                    frame_timestamps=_evidence(clip, o),
                    model_id=model_id,
                    prompt_hash=prompt_hash,
                )
                state.open_events[event.event_id] = event
                changes.append(EventChange(kind="open", event=event))
            else:
                event, material = _merge(match, o, clip)
                state.open_events[event.event_id] = event
                if material:
                    changes.append(EventChange(kind="update", event=event))
            seen.add(event.event_id)
        changes += self._close_stale(state, clip, seen)
        state.last_index = clip.index
        return changes

    def _match(self, state: TrackerState, o: Observation) -> Event | None:
        gap = self.config.join_gap_s
        candidates = [
            e
            for e in state.open_events.values()
            if e.label == o.label and o.start <= e.end + gap + 1e-6 and o.end >= e.start - gap - 1e-6
        ]
        return max(candidates, key=lambda e: e.end, default=None)

    def _close_stale(self, state: TrackerState, clip: ClipMessage, seen: set[str]) -> list[EventChange]:
        out = []
        for event_id, event in list(state.open_events.items()):
            if event_id in seen or clip.t_end < event.end + self.config.close_after_s:
                continue
            closed = event.model_copy(
                update={"state": "closed", "version": event.version + 1, "updated_at": time.time()}
            )
            del state.open_events[event_id]
            out.append(EventChange(kind="close", event=closed))
        return out

    def close_all(self, state: TrackerState) -> list[EventChange]:
        """End of a finite stream: whatever is still open is closed."""
        out = [
            EventChange(
                kind="close", event=e.model_copy(update={"state": "closed", "version": e.version + 1})
            )
            for e in state.open_events.values()
        ]
        state.open_events.clear()
        return out


def _evidence(clip: ClipMessage, o: Observation) -> list[float]:
    inside = [t for t in clip.timestamps if o.start - 1e-6 <= t <= o.end + 1e-6]
    return inside or [min(clip.timestamps, key=lambda t: abs(t - o.start))]


def _merge(event: Event, o: Observation, clip: ClipMessage) -> tuple[Event, bool]:
    """The event with ``o`` folded in, and whether that changed what an alert would say (span, confidence,
    description, boxes); new evidence alone (another clip, more frames) is kept without an update."""
    update: dict[str, object] = {
        "start": min(event.start, o.start),
        "end": max(event.end, o.end),
        "confidence": max(event.confidence, o.confidence),
    }
    if o.start < event.start and o.wall_start is not None:
        update["wall_start"] = o.wall_start
    if o.end > event.end and o.wall_end is not None:
        update["wall_end"] = o.wall_end
    if o.confidence >= event.confidence:
        update["description"] = o.description or event.description
        update["boxes"] = o.boxes or event.boxes
    material = event.model_copy(update=update) != event
    update["frame_timestamps"] = sorted(set(event.frame_timestamps) | set(_evidence(clip, o)))
    if clip.clip_id not in event.clip_ids:
        update["clip_ids"] = [*event.clip_ids, clip.clip_id]
    if material:
        update.update(version=event.version + 1, updated_at=time.time())
    return event.model_copy(update=update), material


class SegmentStitcher:
    """Per-clip segments to one ordered, non-overlapping sequence: a segment continuing the previous one
    with the same title extends it; otherwise it starts where the previous one ended."""

    def apply(self, state: TrackerState, clip: ClipMessage, parsed: ParsedOutput) -> list[SegmentRecord]:
        out: list[SegmentRecord] = []
        for k, seg in enumerate(sorted(parsed.segments, key=lambda s: s.start_s)):
            start = min(clip.t_start + seg.start_s, clip.t_end)
            end = min(clip.t_start + seg.end_s, clip.t_end)
            last = state.last_segment
            if last is not None and end <= last.end + 1e-6:
                continue  # already covered by the previous clip's overlap
            if last is not None and _same_title(last.title, seg.title) and start <= last.end + 1e-6:
                merged = last.model_copy(
                    update={"end": round(end, 3), "clip_ids": [*last.clip_ids, clip.clip_id]}
                )
                out = [r for r in out if r.segment_id != merged.segment_id] + [merged]
                state.last_segment = merged
                continue
            if last is not None:
                start = max(start, last.end)
            record = SegmentRecord(
                segment_id=f"{clip.clip_id}-s{k}",
                stream_id=clip.stream_id,
                start=round(start, 3),
                end=round(end, 3),
                title=seg.title,
                description=seg.description,
                clip_ids=[clip.clip_id],
            )
            out.append(record)
            state.last_segment = record
        return out


def _same_title(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split()) and bool(a.strip())
