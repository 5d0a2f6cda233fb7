"""The ingest pipeline: source -> sampled frames -> clips -> (gate) -> JPEG -> a clip sink.

Sinks are Kafka (:class:`vstream.kafka_io.ClipPublisher`) or anything with ``send`` (the CLI prints).
A file resumes at ``start_index``: decoding starts just before that window, so the clips produced are
byte-for-byte the clips an uninterrupted run would have produced, with the same ids.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from vstream.clipper import Clip, Clipper
from vstream.config import DecodeSettings
from vstream.encode import encode_jpeg
from vstream.gate import MotionGate
from vstream.media.frames import SourceInfo
from vstream.media.live import LiveSource
from vstream.media.source import FrameSource, open_source
from vstream.schema import SCHEMA_VERSION, ClipMessage, IngestRequest, clip_id_for, redact_url

logger = logging.getLogger(__name__)


class ClipSink(Protocol):
    def send(self, msg: ClipMessage) -> None: ...


@dataclass
class IngestStats:
    clips: int = 0
    frames: int = 0
    gated: int = 0
    dropped_frames: int = 0
    bytes: int = 0
    start_index: int = 0
    media_seconds: float = 0.0
    interrupted: bool = False
    gaps: int = 0


def build_message(clip: Clip, req: IngestRequest, info: SourceInfo, quality: int) -> ClipMessage:
    live = info.live
    walls = [f.wall for f in clip.frames]
    return ClipMessage(
        # a clip without a gap stays version 1, readable by consumers that predate the field
        schema_version=2 if clip.gap is not None else SCHEMA_VERSION,
        stream_id=req.stream_id,
        clip_id=clip_id_for(req.stream_id, req.params, clip.index),
        index=clip.index,
        params=req.params,
        t_start=clip.t_start,
        t_end=clip.t_end,
        timestamps=clip.timestamps,
        wall_timestamps=[w for w in walls if w is not None]
        if live and all(w is not None for w in walls)
        else None,
        clock=clip.frames[0].clock,
        width=clip.width,  # the frames' own size: a live source can change resolution
        height=clip.height,
        frames=[encode_jpeg(f.image, quality) for f in clip.frames],
        source=redact_url(req.source),
        live=live,
        last=clip.last,
        gap=clip.gap,
        task=req.task,
        event_types=req.event_types,
        preset=req.preset,
        retention_s=req.retention_s,
    )


def start_time_for(req: IngestRequest, start_index: int) -> float:
    """Decode from one sample before the window, so an odd window can borrow the frame before it."""
    return max(0.0, start_index * req.params.step_seconds - 1.0 / req.params.fps)


def open_for(
    req: IngestRequest,
    decode: DecodeSettings,
    start_index: int = 0,
    *,
    stop: threading.Event | None = None,
) -> FrameSource:
    """Open the request's source; a live one connects in the background and ``stop`` cancels it."""
    return open_source(
        req.source,
        req.params,
        decode,
        start=start_time_for(req, start_index),
        realtime=req.realtime,
        stop=stop,
    )


class _Emitter:
    """Gates clips, builds their messages and sends them, counting into ``stats``."""

    def __init__(
        self, req: IngestRequest, source: FrameSource, sink: ClipSink, stats: IngestStats, quality: int
    ) -> None:
        self.req, self.source, self.sink, self.stats, self.quality = req, source, sink, stats, quality
        self.gate = MotionGate(req.gate)

    def __call__(self, clips: list[Clip]) -> None:
        for clip in clips:
            if clip.gap is not None:
                self.stats.gaps += 1
                _log_gap(self.req.stream_id, clip)
            if not self.gate.passes(clip):
                self.stats.gated += 1
                continue
            msg = build_message(clip, self.req, self.source.info, self.quality)
            self.sink.send(msg)
            self.stats.clips += 1
            self.stats.frames += msg.n_frames
            self.stats.bytes += msg.payload_bytes


def run_ingest(
    req: IngestRequest,
    source: FrameSource,
    sink: ClipSink,
    *,
    quality: int = 85,
    start_index: int = 0,
    stop: threading.Event | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> IngestStats:
    """Cut ``source`` into clips for ``sink``; returns at the source's end or once ``stop`` is set."""
    stats = IngestStats(start_index=start_index)
    clipper = Clipper(req.params, start_index=start_index)
    emit = _Emitter(req, source, sink, stats, quality)
    ended = False
    # Watch before reading ``info``: a live source's info waits for a first connection that may never come.
    watcher = _close_on_stop(source, stop) if stop is not None and _is_live(source) else None
    try:
        ended = _pump(source, clipper, emit, stats, stop, on_progress, start_index * req.params.step_seconds)
    finally:
        if watcher is not None:
            watcher.set()
        stats.dropped_frames = source.dropped
        source.close()
        if not ended and (source.info.live or not stats.interrupted):
            # A live source cannot be read again from where it stopped, and a failed source may never
            # be: send what the open windows hold (not as the last clip: a retry continues the stream).
            # A file that is merely interrupted resumes from its acknowledged clip instead.
            _flush(clipper, emit)
    return stats


def _is_live(source: FrameSource) -> bool:
    return isinstance(source, LiveSource) or source.info.live


def _pump(
    source: FrameSource,
    clipper: Clipper,
    emit: Callable[[list[Clip]], None],
    stats: IngestStats,
    stop: threading.Event | None,
    on_progress: Callable[[float], None] | None,
    resume_at: float,
) -> bool:
    """Feed the source's frames to the clipper; True when the source reached its end."""
    # A live stream restarts its media clock at 0; continue the timeline (and the clip ids) where it left off.
    shift = resume_at if source.info.restarts_at_zero else 0.0
    for frame in source.frames():
        if shift:
            frame = replace(frame, t=round(frame.t + shift, 6), slot=round(frame.key + shift, 6))
        stats.media_seconds = frame.t
        emit(clipper.push(frame))
        if on_progress is not None:
            on_progress(frame.t)
        if stop is not None and stop.is_set():
            stats.interrupted = True
            return False
    if stop is not None and stop.is_set():
        stats.interrupted = True  # the watcher closed a live source that had nothing to send
        return False
    emit(clipper.finish(source.info.duration))
    return True


def _log_gap(stream_id: str, clip: Clip) -> None:
    gap = clip.gap
    if gap is not None:
        before = f"{gap.t_before:.2f}" if gap.t_before is not None else "start"
        logger.warning(
            "stream %s: %s gap of %.1f s before clip %d (media %s -> %.2f)",
            stream_id,
            gap.reason,
            gap.seconds,
            clip.index,
            before,
            gap.t_after,
        )


def _close_on_stop(source: FrameSource, stop: threading.Event) -> threading.Event:
    """A live source waiting for a camera that is down yields nothing, so the loop never sees ``stop``:
    close the source when it is set. Returns the event that ends the watch."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            if stop.is_set():
                source.close()
                return

    threading.Thread(target=watch, name="vstream-ingest-stop", daemon=True).start()
    return done


def _flush(clipper: Clipper, emit: Callable[[list[Clip]], None]) -> None:
    try:
        emit(clipper.finish(last=False))
    except Exception:  # the sink failing now must not hide the error that ended the source
        logger.exception("could not send the open windows of an interrupted live source")


def describe(stats: IngestStats, started: float) -> str:
    took = time.monotonic() - started
    speed = stats.media_seconds / took if took > 0 else 0.0
    return (
        f"clips={stats.clips} frames={stats.frames} gated={stats.gated} "
        f"dropped_frames={stats.dropped_frames} bytes={stats.bytes} media_s={stats.media_seconds:.1f} "
        f"took_s={took:.2f} x_realtime={speed:.1f}"
    )
