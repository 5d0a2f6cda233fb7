"""PyAV (FFmpeg) decoding for files and live streams.

For files, skipping B-frames (``skip_frame = "BIDIR"``) is about twice as fast as a full decode (see
bench/RESULTS.md) but only correct when the remaining I/P frames still land within one source frame of
every sample time; ``auto`` measures that on the first seconds of the file before choosing it.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from functools import cache

import av
import numpy as np

from vstream.media.anchor import WallAnchor
from vstream.media.frames import Frame, FrameSampler, Gap, Pick, SourceError, SourceInfo, target_size
from vstream.media.reader import DecodeSpec, SkipMode

logger = logging.getLogger(__name__)

__all__ = ["LIVE_SCHEMES", "DecodeSpec", "PyAVReader", "SkipMode", "is_live_url", "scheme_supported"]
LIVE_SCHEMES = (
    "rtsp://",
    "rtsps://",
    "rtmp://",
    "rtmps://",
    "http://",
    "https://",
    "udp://",
    "srt://",
    "tcp://",
)
_PROBE_SECONDS = 1.0
# Consecutive live frames further apart than this (media time) have an outage between them.
_LIVE_HOLE_S = 1.0
# Media time running ahead of arrival time by more than this is a timestamp discontinuity, not an outage.
_PTS_JUMP_S = 1.0
# A live stream this many undecodable packets in a row is broken: reconnect. A file is read to its end:
# a corrupt stretch can be followed by good data, and a truncated file's missing tail only costs a
# failed decode per packet.
_LIVE_MAX_BAD_PACKETS = 100


def is_live_url(source: str) -> bool:
    return source.lower().startswith(LIVE_SCHEMES)


@cache
def scheme_supported(scheme: str) -> bool:
    """Whether this FFmpeg build has the protocol (PyAV's wheel lacks libsrt): opening a URL of it that
    cannot connect fails with "protocol not found" at once when it is missing."""
    try:
        av.open(f"{scheme}://127.0.0.1:9/", timeout=(0.5, 0.5)).close()
    except av.error.ProtocolNotFoundError:
        return False
    except (av.error.FFmpegError, OSError):
        pass
    return True


def open_container(spec: DecodeSpec) -> av.container.InputContainer:
    options: dict[str, str] = {}
    if spec.source.startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = "tcp"
    try:
        return av.open(spec.source, options=options, timeout=(spec.open_timeout_s, spec.open_timeout_s))
    except av.error.FileNotFoundError as exc:
        raise SourceError(f"no such file: {spec.label}") from exc
    except av.error.ProtocolNotFoundError as exc:
        scheme = spec.source.split("://", 1)[0]
        raise SourceError(f"this FFmpeg build cannot read {scheme}:// URLs: {spec.label}") from exc
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        # a live server can answer garbage while its stream (re)starts: only a file is surely broken
        raise SourceError(
            f"not a readable video (empty, truncated or not a media file): {spec.label}",
            fatal=not spec.live,
        ) from exc
    except (av.error.ConnectionRefusedError, av.error.ExitError, TimeoutError) as exc:
        raise SourceError(f"cannot connect to {spec.label}: {exc}", fatal=not spec.live) from exc
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot open {spec.label}: {exc}", fatal=not spec.live) from exc


def _video_stream(container: av.container.InputContainer, source: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds: list[str] = sorted({s.type for s in container.streams}) or ["nothing"]
        raise SourceError(f"no video stream in {source} (it has {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        raise SourceError(f"unsupported video codec in {source}")
    return stream


def _choose_skip(spec: DecodeSpec) -> str:
    """Decode the first seconds with B-frames skipped; keep skipping only if the I/P frames left still
    fall within one source frame of every sample time and keep up with the sampling rate.

    The probe has its own container: seeking the main one back after decoding left its decoder in a
    state where skipping no longer saved any work.
    """
    times: list[float] = []
    with open_container(spec) as container:
        stream = _video_stream(container, spec.label)
        stream.codec_context.thread_count = spec.threads
        stream.codec_context.skip_frame = "BIDIR"
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        for frame in container.decode(stream):
            if frame.time is None:
                return "none"
            times.append(float(frame.time))
            if times[-1] - times[0] >= _PROBE_SECONDS:
                break
    if rate <= 0 or len(times) < 3:
        return "none"
    span = times[-1] - times[0]
    if len(times) >= span * rate * 0.9:
        return "none"  # no B-frames to skip
    # With refs every <= 3 frames, a sample time on a frame instant is at most one frame from a ref
    # (IBBP: positions 0,1,2 mod 3 are 0,1,1 frames away); the refs alone must also keep up with fps.
    max_gap = max(b - a for a, b in itertools.pairwise(times))
    return "bidir" if max_gap <= min(3 / rate, 1.0 / spec.fps) + 1e-6 else "none"


def _info(
    stream: av.video.stream.VideoStream, first: av.VideoFrame, spec: DecodeSpec, skip: str
) -> SourceInfo:
    rotation = int(first.rotation or 0) % 360
    w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
    out_w, out_h = target_size(w, h, spec.max_side)
    rate = stream.average_rate or stream.guessed_rate
    duration = None
    if not spec.live and stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif getattr(stream.container, "duration", None):
        # For a URL, a known duration means a finite resource (a file over HTTP, a finished HLS playlist);
        # live streams have none.
        duration = stream.container.duration / 1_000_000  # type: ignore[attr-defined]
    return SourceInfo(
        width=w,
        height=h,
        out_width=out_w,
        out_height=out_h,
        fps=float(rate) if rate else None,
        duration=duration,
        codec=stream.codec_context.name,
        rotation=rotation,
        live=spec.live,
        backend="pyav",
        skip_frame=skip,
        restarts_at_zero=spec.live,
    )


def to_rgb(frame: av.VideoFrame, info: SourceInfo, max_side: int) -> np.ndarray:
    """Resize in swscale (before rotation, so only the kept size is converted) and rotate for display.

    The size follows each frame, not the first: a live source can change resolution mid-stream.
    """
    k = info.rotation // 90
    w, h = target_size(frame.width, frame.height, max_side)
    img = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


class PyAVReader:
    """Opens a source, reports :class:`SourceInfo`, then yields sampled, resized frames."""

    def __init__(self, spec: DecodeSpec) -> None:
        self.spec = spec
        skip = "none"
        if not spec.live and spec.skip != "none":
            skip = _choose_skip(spec) if spec.skip == "auto" else spec.skip
        self.container = open_container(spec)
        self.stream = _video_stream(self.container, spec.label)
        self.stream.thread_type = "AUTO" if spec.threads != 1 else "SLICE"
        self.stream.codec_context.thread_count = spec.threads
        if skip == "bidir":
            self.stream.codec_context.skip_frame = "BIDIR"
        if spec.start > 0 and not spec.live:
            base = self.stream.time_base or 1
            self.container.seek(int(max(0.0, spec.start - 1.0) / base), stream=self.stream)
        self.bad_packets = 0
        self._frames = self._decode()
        try:
            self._first = next(self._frames)
        except StopIteration:
            raise SourceError(f"no decodable video frames in {spec.label}") from None
        self.info = _info(self.stream, self._first, spec, skip)

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Frames, skipping packets that do not decode (corrupt or cut off), so that a damaged or
        truncated source yields what is decodable instead of nothing."""
        in_a_row, decoded = 0, False
        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as exc:
                    self.bad_packets += 1
                    in_a_row += 1
                    if self.spec.live and in_a_row >= _LIVE_MAX_BAD_PACKETS:
                        raise SourceError(
                            f"{in_a_row} undecodable packets in a row: {exc}", fatal=False
                        ) from exc
                    continue
                in_a_row = 0
                decoded = decoded or bool(frames)
                yield from frames
        except av.error.EOFError:
            return
        except av.error.FFmpegError as exc:
            if decoded and not self.spec.live:  # a file cut off mid-packet: keep what came before
                logger.warning("%s ends early (truncated?): %s", self.spec.label, exc)
                self.bad_packets += 1
                return
            raise SourceError(f"decode failed in {self.spec.label}: {exc}", fatal=not self.spec.live) from exc

    def frames(self) -> Iterator[Frame]:
        if self.spec.live and self.info.duration is None:
            yield from _LiveTimeline(self).frames(_chain(self._first, self._frames))
            return
        sampler = FrameSampler(self.spec.fps, self.spec.start if not self.spec.live else 0.0)
        origin = self._origin(self._first)
        count = 0
        for frame in _chain(self._first, self._frames):
            t, clock = self._time(frame, origin, count)
            count += 1
            if t < 0:
                continue
            for pick in sampler.push(t, frame):
                yield self._frame(pick.item, pick.t, pick.slot, None, clock)  # type: ignore[arg-type]
        self._log_bad_packets()
        # A damaged file's header duration can run past its last decodable frame: don't pad up to it.
        end = self.info.duration - origin if self.info.duration is not None and not self.bad_packets else None
        for pick in sampler.finish(end):
            yield self._frame(pick.item, pick.t, pick.slot, None, "pts")  # type: ignore[arg-type]

    def _log_bad_packets(self) -> None:
        if self.bad_packets:
            logger.warning(
                "%s: skipped %d undecodable packets (corrupt or truncated)",
                self.spec.label,
                self.bad_packets,
            )

    def _origin(self, first: av.VideoFrame) -> float:
        if self.spec.live:
            return float(first.time) if first.time is not None else 0.0
        if self.stream.start_time is not None and self.stream.time_base is not None:
            return float(self.stream.start_time * self.stream.time_base)
        return float(first.time or 0.0)

    def _time(self, frame: av.VideoFrame, origin: float, count: int) -> tuple[float, str]:
        if frame.time is not None:
            return float(frame.time) - origin, "pts"
        rate = self.info.fps or 25.0
        return count / rate, "arrival" if self.spec.live else "pts"

    def _frame(
        self,
        frame: av.VideoFrame,
        t: float,
        slot: float,
        wall: float | None,
        clock: str,
        gap: Gap | None = None,
    ) -> Frame:
        return Frame(
            to_rgb(frame, self.info, self.spec.max_side),
            round(t, 6),
            round(wall, 6) if wall is not None else None,
            "arrival" if clock == "arrival" else "pts",
            slot,
            gap,
        )

    def close(self) -> None:
        self.container.close()


class _Segment:
    """A run of live frames with continuous timestamps: one media origin, one wall anchor, one sampler.

    Sampled frames are held until the anchor settles, so even the first ones get a settled wall time.
    """

    def __init__(self, reader: PyAVReader, origin: float, gap: Gap | None) -> None:
        self.reader, self.origin = reader, origin
        self.sampler = FrameSampler(reader.spec.fps)
        self.anchor = WallAnchor()
        self.held: list[Pick] = []
        self.clock = "pts"
        self.last_t = self.last_arrival = self.last_wall = -1.0
        self.gap, self.gap_at = gap, 0.0  # the gap to mark on the first frame at or after gap_at
        self.broken: Gap | None = None  # set when the stream no longer fits this segment

    def fits(self, t: float, arrival: float) -> Gap | None:
        """A gap when frame time ``t`` cannot continue this segment (timestamps went back or jumped)."""
        if self.last_t < 0:
            return None
        waited = max(0.0, arrival - self.last_arrival)
        if t < self.last_t - 1e-6 or t - self.last_t > waited + _PTS_JUMP_S:
            return Gap("discontinuity", round(waited, 3), restart=True)
        return None

    def push(self, frame: av.VideoFrame, t: float, arrival: float, clock: str) -> list[Frame]:
        self.clock = clock
        if self.last_t >= 0 and t - self.last_t > _LIVE_HOLE_S and self.gap is None:
            self.gap, self.gap_at = Gap("stall", round(t - self.last_t, 3)), t
        if not self.anchor.push(arrival, t):
            self.broken = Gap("stall", round(arrival - self.last_arrival, 3), restart=True)
        self.last_t, self.last_arrival = t, arrival
        self.held.extend(self.sampler.push(t, frame))
        return self._release() if self.anchor.settled else []

    def finish(self) -> list[Frame]:
        self.anchor.settle()
        self.held.extend(self.sampler.finish())
        return self._release()

    def _release(self) -> list[Frame]:
        out, anchor = [], self.anchor.value or 0.0
        for pick in self.held:
            # Never back in time, even when the anchor was lowered since the previous frame.
            wall = max(anchor + pick.t, self.last_wall + 1e-3)
            self.last_wall = wall
            gap = None
            if self.gap is not None and pick.t >= self.gap_at - 1e-6:
                gap, self.gap = self.gap, None
            out.append(self.reader._frame(pick.item, pick.t, pick.slot, wall, self.clock, gap))  # type: ignore[arg-type]
        self.held.clear()
        return out


class _LiveTimeline:
    """Splits one connection's frames into :class:`_Segment`s at timestamp discontinuities and stalls.

    Media time is per segment (from 0); the live source lays segments end to end on the sampling grid.
    """

    def __init__(self, reader: PyAVReader) -> None:
        self.reader = reader

    def frames(self, decoded: Iterator[av.VideoFrame]) -> Iterator[Frame]:
        seg: _Segment | None = None
        gap: Gap | None = None
        rate = self.reader.info.fps or 25.0
        for count, frame in enumerate(decoded):
            arrival = time.time()
            raw = float(frame.time) if frame.time is not None else count / rate
            clock = "pts" if frame.time is not None else "arrival"
            if seg is not None:
                gap = seg.broken or seg.fits(raw - seg.origin, arrival)
                if gap is not None:
                    yield from seg.finish()
                    seg = None
            if seg is None:
                seg, gap = _Segment(self.reader, raw, gap), None
            yield from seg.push(frame, raw - seg.origin, arrival, clock)
        self.reader._log_bad_packets()
        if seg is not None:
            yield from seg.finish()


def _chain(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest
