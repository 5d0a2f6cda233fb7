"""Write events, segments and captions into Redis in the layout ``vstream.store.ResultStore`` writes, for
tests of the readers (queries, questions) that need known records without running a model."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from vstream.analysis.records import CaptionRecord, Event, SegmentRecord
from vstream.names import Keys


def event(
    stream_id: str, event_id: str, label: str, start: float, end: float, description: str = ""
) -> Event:
    return Event(
        event_id=event_id,
        stream_id=stream_id,
        label=label,
        state="closed",
        start=start,
        end=end,
        confidence=0.9,
        description=description,
    )


def segment(
    stream_id: str, segment_id: str, start: float, end: float, title: str, description: str = ""
) -> SegmentRecord:
    return SegmentRecord(
        segment_id=segment_id, stream_id=stream_id, start=start, end=end, title=title, description=description
    )


def caption(stream_id: str, clip_id: str, start: float, end: float, text: str) -> CaptionRecord:
    return CaptionRecord(stream_id=stream_id, clip_id=clip_id, start=start, end=end, text=text)


def store(
    r: redis.Redis,
    keys: Keys,
    stream_id: str,
    *,
    events: Sequence[Event] = (),
    segments: Sequence[SegmentRecord] = (),
    captions: Sequence[CaptionRecord] = (),
) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.sadd(keys.streams, stream_id)
    for e in events:
        pipe.set(keys.event(stream_id, e.event_id), e.model_dump_json())
        pipe.zadd(keys.events(stream_id), {e.event_id: e.start})
        pipe.zadd(keys.spans(stream_id), {"events": e.end - e.start}, gt=True)
    for s in segments:
        pipe.set(keys.segment(stream_id, s.segment_id), s.model_dump_json())
        pipe.zadd(keys.segments(stream_id), {s.segment_id: s.start})
        pipe.zadd(keys.spans(stream_id), {"segments": s.end - s.start}, gt=True)
    for c in captions:
        pipe.zadd(keys.captions(stream_id), {c.model_dump_json(): c.start})
        pipe.zadd(keys.spans(stream_id), {"captions": c.end - c.start}, gt=True)
    pipe.execute()
