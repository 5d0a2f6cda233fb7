"""``vstream analyze``: the whole pipeline in one process, no Kafka or Redis.

Ingest runs in a thread and hands clips over through a bounded queue (so decoding never runs far ahead
of the model and memory stays flat); the model runs micro-batches; events are tracked across clips in
memory exactly as the workers do in Redis.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vstream.analysis.analyzer import Analysis, ClipAnalyzer
from vstream.analysis.records import EventChange, SegmentRecord
from vstream.analysis.timeline import EventTracker, SegmentStitcher, TrackerState
from vstream.blobstore import BlobError
from vstream.config import Settings
from vstream.ingest import open_for, run_ingest
from vstream.media.frames import SourceError
from vstream.model.base import ModelBackend
from vstream.schema import ClipMessage, IngestRequest

_HANDOFF_CLIPS = 8
_END = None


@dataclass
class AnalyzeSummary:
    clips: int = 0
    failed: int = 0
    segments: list[SegmentRecord] = field(default_factory=list)
    parse_failures: int = 0
    events: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class _QueueSink:
    def __init__(self, q: queue.Queue[ClipMessage | None], stop: threading.Event) -> None:
        self.q, self.stop = q, stop

    def send(self, msg: ClipMessage) -> None:
        while not self.stop.is_set():
            try:
                self.q.put(msg, timeout=0.5)
                return
            except queue.Full:
                continue


def analyze(
    req: IngestRequest,
    settings: Settings,
    backend: ModelBackend,
    *,
    on_clip: Callable[[Analysis, list[EventChange], list[SegmentRecord]], None],
    on_progress: Callable[[float], None] | None = None,
) -> AnalyzeSummary:
    """Run ``req`` end to end; ``on_clip`` gets each clip's analysis with the event changes it caused."""
    q: queue.Queue[ClipMessage | None] = queue.Queue(maxsize=_HANDOFF_CLIPS)
    stop, summary = threading.Event(), AnalyzeSummary()
    source = open_for(req, settings.decode)  # opened here so a bad source fails before any thread starts

    def ingest() -> None:
        try:
            run_ingest(
                req,
                source,
                _QueueSink(q, stop),
                quality=settings.clips.jpeg_quality,
                stop=stop,
                on_progress=on_progress,
            )
        except SourceError as exc:
            summary.error = str(exc)
        finally:
            q.put(_END)

    thread = threading.Thread(target=ingest, name="ingest", daemon=True)
    thread.start()
    m = settings.model
    analyzer = ClipAnalyzer(backend, _NoBlobs(), thinking=m.thinking, max_new_tokens=m.max_new_tokens)
    state, tracker, stitcher = TrackerState(), EventTracker(), SegmentStitcher()
    try:
        while (batch := _next_batch(q, m.max_batch, m.max_wait_s)) is not None:
            for a in analyzer.run(batch):
                changes, segments = _apply(a, state, tracker, stitcher, summary)
                on_clip(a, changes, segments)
    finally:
        stop.set()
        thread.join(timeout=30)
    return summary


def _apply(
    a: Analysis,
    state: TrackerState,
    tracker: EventTracker,
    stitcher: SegmentStitcher,
    summary: AnalyzeSummary,
) -> tuple[list[EventChange], list[SegmentRecord]]:
    summary.clips += 1
    if a.result is None or a.parsed is None:
        summary.failed += 1
        return [], []
    if not a.result.ok:
        summary.parse_failures += 1
        return [], []
    changes = tracker.apply(
        state, a.clip, list(a.result.observations), a.result.model_id, a.result.prompt_hash
    )
    segments = stitcher.apply(state, a.clip, a.parsed)
    ids = {s.segment_id for s in segments}
    summary.segments = [s for s in summary.segments if s.segment_id not in ids] + segments
    if a.clip.last:
        changes += tracker.close_all(state)
    for c in changes:
        if c.kind == "open":
            summary.events[c.event.label] = summary.events.get(c.event.label, 0) + 1
    return changes, segments


def _next_batch(q: queue.Queue[ClipMessage | None], size: int, wait_s: float) -> list[ClipMessage] | None:
    first = q.get()
    if first is _END:
        return None
    batch, deadline = [first], time.monotonic() + wait_s
    while len(batch) < size:
        try:
            item = q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if item is _END:
            q.put(_END)  # seen again by the next call, which then ends
            break
        batch.append(item)
    return batch


class _NoBlobs:
    """In one process clips are never claim-checked: nothing goes through Kafka."""

    def get(self, ref: str) -> bytes:
        raise BlobError(f"unexpected claim-check reference in a local run: {ref}")
