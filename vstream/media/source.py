"""One entry point for every kind of source: :func:`open_source`."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal, Protocol

from vstream.config import DecodeSettings
from vstream.media.child import DecodeProcess
from vstream.media.frames import Frame, SourceError, SourceInfo
from vstream.media.live import Backoff, LiveSource
from vstream.media.pyav_source import LIVE_SCHEMES, is_live_url, scheme_supported
from vstream.media.reader import DecodeSpec
from vstream.schema import ClipParams


class FrameSource(Protocol):
    @property
    def info(self) -> SourceInfo: ...

    @property
    def dropped(self) -> int: ...

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class FileSource:
    """A finite source decoded in a watched child; ``realtime`` paces it like a live stream."""

    def __init__(self, spec: DecodeSpec, *, stall_timeout_s: float, realtime: bool = False) -> None:
        self._proc = DecodeProcess(spec, stall_timeout_s=stall_timeout_s)
        self.realtime = realtime
        self.info = replace(self._proc.info, live=True, duration=None) if realtime else self._proc.info
        self.dropped = 0

    def frames(self) -> Iterator[Frame]:
        if not self.realtime:
            yield from self._proc.frames()
            return
        wall0: float | None = None
        for frame in self._proc.frames():
            wall0 = wall0 if wall0 is not None else time.time() - frame.t
            delay = wall0 + frame.t - time.time()
            if delay > 0:
                time.sleep(delay)
            yield replace(frame, wall=round(wall0 + frame.t, 6))

    def close(self) -> None:
        self._proc.close()


def check_scheme(source: str) -> None:
    """Refuse a URL whose scheme no decoder reads, rather than looking for a file named like it."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", source)
    if match and not is_live_url(source):
        supported = ", ".join(s.removesuffix("://") for s in LIVE_SCHEMES)
        raise SourceError(
            f"unsupported source scheme {match.group(1)!r} (supported: {supported}; or a local file path)"
        )
    if match and not scheme_supported(match.group(1).lower()):
        raise SourceError(
            f"this FFmpeg build cannot read {match.group(1).lower()}:// URLs (no support built in)"
        )


def open_source(
    source: str,
    params: ClipParams,
    decode: DecodeSettings,
    *,
    start: float = 0.0,
    realtime: bool = False,
    stop: threading.Event | None = None,
) -> FrameSource:
    """Open a file path or a live URL (rtsp, rtmp, http(s)/HLS, udp, srt, tcp); raises SourceError.

    A live URL returns at once: it connects in the background, and ``stop`` (or ``close()``) cancels a
    stream that never starts; its ``info`` waits for the first connection and raises if it gave up."""
    check_scheme(source)
    live = is_live_url(source)
    if not live:
        path = Path(source)
        if not path.is_file():
            raise SourceError(
                f"no such file: {source}" if not path.exists() else f"not a regular file: {source}"
            )
        if path.stat().st_size == 0:
            raise SourceError(f"empty file (0 bytes): {source}")
    backend: Literal["pyav", "decord"] = "pyav" if live or decode.backend != "decord" else "decord"
    spec = DecodeSpec(
        source=source,
        fps=params.fps,
        max_side=params.max_side,
        start=start,
        live=live,
        backend=backend,
        skip="auto" if decode.backend == "auto" else "none",
        open_timeout_s=decode.open_timeout_s,
    )
    if live:
        backoff = Backoff(
            decode.reconnect_initial_s,
            decode.reconnect_max_s,
            decode.reconnect_attempts,
            decode.reconnect_give_up_s,
        )
        return LiveSource(
            spec,
            stall_timeout_s=decode.live_stall_timeout_s,
            buffer_frames=decode.live_buffer_frames,
            backoff=backoff,
            stop=stop,
        )
    return FileSource(spec, stall_timeout_s=decode.stall_timeout_s, realtime=realtime)
