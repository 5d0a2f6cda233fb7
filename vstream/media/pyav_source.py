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
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from vstream.media.frames import Frame, FrameSampler, SourceError, SourceInfo, target_size

logger = logging.getLogger(__name__)

SkipMode = Literal["auto", "none", "bidir"]
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
_REANCHOR_S = 2.0
# A live stream this many undecodable packets in a row is broken: reconnect. A file is read to its end:
# a corrupt stretch can be followed by good data, and a truncated file's missing tail only costs a
# failed decode per packet.
_LIVE_MAX_BAD_PACKETS = 100


def is_live_url(source: str) -> bool:
    return source.lower().startswith(LIVE_SCHEMES)


@dataclass(frozen=True)
class DecodeSpec:
    """Everything a decoder needs; picklable, so it can cross into the decode child process."""

    source: str
    fps: float
    max_side: int
    start: float = 0.0
    live: bool = False
    backend: Literal["pyav", "decord"] = "pyav"
    skip: SkipMode = "auto"
    threads: int = 1
    open_timeout_s: float = 10.0


def open_container(spec: DecodeSpec) -> av.container.InputContainer:
    options: dict[str, str] = {}
    if spec.source.startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = "tcp"
    try:
        return av.open(spec.source, options=options, timeout=(spec.open_timeout_s, spec.open_timeout_s))
    except av.error.FileNotFoundError as exc:
        raise SourceError(f"no such file: {spec.source}") from exc
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        raise SourceError(
            f"not a readable video (empty, truncated or not a media file): {spec.source}"
        ) from exc
    except (av.error.ConnectionRefusedError, av.error.ExitError, TimeoutError) as exc:
        raise SourceError(f"cannot connect to {spec.source}: {exc}", fatal=not spec.live) from exc
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot open {spec.source}: {exc}", fatal=not spec.live) from exc


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
        stream = _video_stream(container, spec.source)
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


def to_rgb(frame: av.VideoFrame, info: SourceInfo) -> np.ndarray:
    """Resize in swscale (before rotation, so only the kept size is converted) and rotate for display."""
    k = info.rotation // 90
    w, h = (info.out_height, info.out_width) if k % 2 else (info.out_width, info.out_height)
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
        self.stream = _video_stream(self.container, spec.source)
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
            raise SourceError(f"no decodable video frames in {spec.source}") from None
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
                logger.warning("%s ends early (truncated?): %s", self.spec.source, exc)
                self.bad_packets += 1
                return
            raise SourceError(
                f"decode failed in {self.spec.source}: {exc}", fatal=not self.spec.live
            ) from exc

    def frames(self) -> Iterator[Frame]:
        sampler = FrameSampler(self.spec.fps, self.spec.start if not self.spec.live else 0.0)
        origin = self._origin(self._first)
        wall0: float | None = None
        count = 0
        for frame in _chain(self._first, self._frames):
            arrival = time.time()
            t, clock = self._time(frame, origin, count)
            count += 1
            if t < 0:
                continue
            if self.spec.live:
                wall0 = _anchor(wall0, arrival - t)
            for pick in sampler.push(t, frame):
                yield self._frame(pick.item, pick.t, pick.slot, wall0, clock)  # type: ignore[arg-type]
        if self.bad_packets:
            logger.warning(
                "%s: skipped %d undecodable packets (corrupt or truncated)",
                self.spec.source,
                self.bad_packets,
            )
        # A damaged file's header duration can run past its last decodable frame: don't pad up to it.
        end = self.info.duration - origin if self.info.duration is not None and not self.bad_packets else None
        for pick in sampler.finish(end):
            yield self._frame(pick.item, pick.t, pick.slot, wall0, "pts")  # type: ignore[arg-type]

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

    def _frame(self, frame: av.VideoFrame, t: float, slot: float, wall0: float | None, clock: str) -> Frame:
        wall = wall0 + t if wall0 is not None else None
        return Frame(
            to_rgb(frame, self.info), round(t, 6), wall, "arrival" if clock == "arrival" else "pts", slot
        )

    def close(self) -> None:
        self.container.close()


def _anchor(wall0: float | None, candidate: float) -> float:
    """Wall time of media time 0: the least-delayed arrival seen (FFmpeg's probing delays the first frames),
    re-anchored when frames arrive persistently later (the source clock drifts or the stream stalled)."""
    if wall0 is None or candidate < wall0 or candidate - wall0 > _REANCHOR_S:
        return candidate
    return wall0


def _chain(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest
