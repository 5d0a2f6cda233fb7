"""Results in Redis: one atomic, idempotent write per clip.

A clip's result, the event changes it causes, the live-feed entries, segments, caption and the stream's
tracker state are written in one MULTI/EXEC, optimistically locked on the tracker state. So a worker
killed at any point leaves either everything of a clip or nothing, and a redelivered clip (its result
key already exists) changes nothing: at-least-once delivery with exactly-once effect.

Redis Cluster: all of those keys carry the stream's hash tag (one slot). The few keys that span streams
stay out of the transaction: the ``streams`` set and each event's stream locator are written just before
it (idempotent; a locator of a commit that then lost its race points at nothing and expires), and the new
feed entries are copied to the all-streams feed just after it, from a per-stream relay cursor, so a crash
in between is caught up by the next commit of that stream, or by the redelivery of the same clip.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from typing import Literal, cast

import redis

from vstream.analysis.records import ClipResult, EventChange, SegmentRecord
from vstream.analysis.results import ParsedOutput
from vstream.analysis.timeline import EventTracker, SegmentStitcher, TrackerState
from vstream.names import Keys
from vstream.schema import ClipMessage

logger = logging.getLogger(__name__)

FEED_MAXLEN = 100_000
_MAX_WATCH_RETRIES = 20
_RELAY_BATCH = 500
Outcome = Literal["written", "duplicate"]
Entry = tuple[bytes, dict[bytes, bytes]]  # (entry id, fields) as redis-py returns them (RESP2)


def load_segments(client: redis.Redis, keys: Keys, stream_id: str) -> list[SegmentRecord]:
    ids = [i.decode() for i in client.zrange(keys.segments(stream_id), 0, -1)]  # type: ignore[union-attr]
    raws = client.mget([keys.segment(stream_id, i) for i in ids]) if ids else []
    return [SegmentRecord.model_validate_json(r) for r in raws if r]


def with_thumbnail(change: EventChange, clip: ClipMessage, state: TrackerState) -> EventChange:
    """Attach the key frame: the clip frame in the middle of the event's evidence (JPEG, as sent)."""
    event = change.event
    inside = [i for i, t in enumerate(clip.timestamps) if t in set(event.frame_timestamps)]
    if not clip.frames or not inside:
        return change
    i = inside[len(inside) // 2]
    event = event.model_copy(update={"thumbnail_t": clip.timestamps[i]})
    state.open_events[event.event_id] = event
    return change.model_copy(
        update={"event": event, "thumbnail_jpeg_b64": base64.b64encode(clip.frames[i]).decode()}
    )


def version_key(model_id: str, prompt_hash: str) -> str:
    return hashlib.sha256(f"{model_id}|{prompt_hash}".encode()).hexdigest()[:12]


@dataclass
class CommitResult:
    outcome: Outcome
    changes: list[EventChange]
    segments: list[SegmentRecord]


class ResultStore:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        retention_s: int | None = None,
        tracker: EventTracker | None = None,
    ) -> None:
        self.r, self.keys, self.ttl = client, keys, retention_s
        self.tracker = tracker or EventTracker()
        self.stitcher = SegmentStitcher()

    def has_result(self, stream_id: str, clip_id: str, model_id: str, prompt_hash: str) -> bool:
        return bool(self.r.exists(self.keys.result(stream_id, clip_id, version_key(model_id, prompt_hash))))

    def commit(self, result: ClipResult, clip: ClipMessage, parsed: ParsedOutput) -> CommitResult:
        version = version_key(result.model_id, result.prompt_hash)
        result_key = self.keys.result(clip.stream_id, clip.clip_id, version)
        tracker_key = self.keys.tracker(clip.stream_id, version)
        for _ in range(_MAX_WATCH_RETRIES):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(tracker_key, result_key)  # type: ignore[no-untyped-call]
                    if pipe.exists(result_key):
                        pipe.reset()
                        self.relay_feed(clip.stream_id, clip.retention_s)  # a crash may have cut it short
                        return CommitResult("duplicate", [], [])
                    raw = pipe.get(tracker_key)
                    state = TrackerState.model_validate_json(raw) if raw else TrackerState()
                    changes, segments = self._apply(state, result, clip, parsed)
                    self._locate(clip.stream_id, changes, clip.retention_s)
                    pipe.multi()
                    self._write(
                        pipe, result, result_key, tracker_key, state, changes, segments, clip.retention_s
                    )
                    self._count(pipe, clip, "analysed" if result.ok else "failed")
                    pipe.execute()
                except redis.WatchError:
                    continue  # another writer touched this stream: recompute from its state
                if changes:
                    self.relay_feed(clip.stream_id, clip.retention_s)
                return CommitResult("written", changes, segments)
        raise redis.RedisError(f"could not commit {clip.clip_id}: tracker state kept changing")

    def _locate(self, stream_id: str, changes: list[EventChange], clip_ttl: int | None) -> None:
        """Writes that span streams, before the stream's transaction (see the module docstring)."""
        ex = clip_ttl or self.ttl
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(self.keys.streams, stream_id)
        for event_id in {c.event.event_id for c in changes}:
            pipe.set(self.keys.event_stream(event_id), stream_id, ex=ex)
        pipe.execute()

    def relay_feed(self, stream_id: str, clip_ttl: int | None = None) -> int:
        """Copy the stream's feed entries that are not yet in the all-streams feed; returns how many.
        At least once: a crash after a copy and before its cursor moves copies that entry again."""
        k, copied = self.keys, 0
        ex = clip_ttl or self.ttl
        after = self.r.get(k.feed_relayed(stream_id))
        start = "(" + after.decode() if isinstance(after, bytes) else "-"
        while True:
            batch = cast(list[Entry], self.r.xrange(k.feed(stream_id), min=start, count=_RELAY_BATCH))
            if not batch:
                return copied
            pipe = self.r.pipeline(transaction=False)
            for _, fields in batch:
                pipe.xadd(k.feed_all, fields, maxlen=FEED_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.execute()
            last = batch[-1][0].decode()
            self.r.set(k.feed_relayed(stream_id), last, ex=ex)
            copied, start = copied + len(batch), "(" + last

    def count_dead_letter(self, clip: ClipMessage) -> None:
        self._count(self.r, clip, "dead_lettered")

    def _count(self, r: redis.Redis | redis.client.Pipeline, clip: ClipMessage, outcome: str) -> None:
        """Per-job analysis progress; inside the commit's MULTI, so a redelivered clip is never counted
        twice."""
        key = self.keys.analysis_progress(clip.stream_id, clip.params.params_hash)
        r.hincrby(key, outcome, 1)
        if clip.last:  # a stream's clips are settled in order (one partition), so all before it are too
            r.hset(key, "complete", 1)
        ttl = clip.retention_s or self.ttl
        if ttl:
            r.expire(key, ttl)

    def _apply(
        self, state: TrackerState, result: ClipResult, clip: ClipMessage, parsed: ParsedOutput
    ) -> tuple[list[EventChange], list[SegmentRecord]]:
        if clip.index <= state.last_index:
            return [], []  # an older clip re-sent after newer ones were applied: stored, not re-applied
        if not result.ok:
            state.last_index = clip.index
            return [], []
        changes = self.tracker.apply(
            state, clip, list(result.observations), result.model_id, result.prompt_hash
        )
        changes = [with_thumbnail(c, clip, state) if c.kind == "open" else c for c in changes]
        segments = self.stitcher.apply(state, clip, parsed)
        if clip.last:
            changes += self.tracker.close_all(state)
        return changes, segments

    def _write(
        self,
        pipe: redis.client.Pipeline,
        result: ClipResult,
        result_key: str,
        tracker_key: str,
        state: TrackerState,
        changes: list[EventChange],
        segments: list[SegmentRecord],
        clip_ttl: int | None = None,
    ) -> None:
        k, ex = self.keys, clip_ttl or self.ttl
        sid = result.stream_id
        pipe.set(result_key, result.model_dump_json(), ex=ex)
        pipe.zadd(k.results(sid), {result_key: result.t_start})
        for change in changes:
            event = change.event
            if change.thumbnail_jpeg_b64 is not None:
                jpeg = base64.b64decode(change.thumbnail_jpeg_b64)
                pipe.set(k.thumbnail(sid, event.event_id), jpeg, ex=ex)
            pipe.set(k.event(sid, event.event_id), event.model_dump_json(), ex=ex)
            pipe.zadd(k.events(sid), {event.event_id: event.start})
            pipe.zadd(k.spans(sid), {"events": event.end - event.start}, gt=True)
            entry = {"kind": change.kind, "data": change.model_dump_json()}
            pipe.xadd(k.feed(sid), entry, maxlen=FEED_MAXLEN, approximate=True)  # type: ignore[arg-type]
        for seg in segments:
            pipe.set(k.segment(sid, seg.segment_id), seg.model_dump_json(), ex=ex)
            pipe.zadd(k.segments(sid), {seg.segment_id: seg.start})
            pipe.zadd(k.spans(sid), {"segments": seg.end - seg.start}, gt=True)
        if result.caption is not None:
            pipe.zadd(k.captions(sid), {result.caption.model_dump_json(): result.caption.start})
            pipe.zadd(k.spans(sid), {"captions": result.caption.end - result.caption.start}, gt=True)
        pipe.set(tracker_key, state.model_dump_json(), ex=ex)
        if ex:
            for key in (
                k.results(sid),
                k.events(sid),
                k.segments(sid),
                k.captions(sid),
                k.feed(sid),
                k.spans(sid),
            ):
                pipe.expire(key, ex)
