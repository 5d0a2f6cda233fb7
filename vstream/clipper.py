"""Cut a time-ordered stream of sampled frames into overlapping windows.

Window ``k`` covers media time ``[k * step, k * step + clip_seconds)`` with ``step = clip - overlap``.
Frames are placed in windows by the sample time they were chosen for (``Frame.key``), not by their own
timestamp, which may sit a source frame earlier or later (B-frame skipping, variable frame rate): so
windows are exact on the sampling grid while every frame still reports its true time.
Each clip holds an even number of frames, at least two, because GLM-4.5V groups frames in pairs: an odd
window borrows the frame just before it, else the one just after (still real footage, no duplicate), and
only a source with a single frame in total gets that frame twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from vstream.media.frames import Frame
from vstream.schema import ClipParams

_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Clip:
    index: int
    t_start: float
    t_end: float
    frames: tuple[Frame, ...]
    last: bool = False

    @property
    def timestamps(self) -> list[float]:
        return [f.t for f in self.frames]


class Clipper:
    """Streaming windowing; feed frames with :meth:`push`, then call :meth:`finish` at end of stream."""

    def __init__(self, params: ClipParams, *, start_index: int = 0) -> None:
        self.params = params
        self.index = start_index
        self._buf: deque[Frame] = deque()
        self._before: Frame | None = None  # newest frame older than the current window
        self._covered_until = -1.0  # media time up to which emitted windows reach

    @property
    def window_start(self) -> float:
        return self.index * self.params.step_seconds

    @property
    def window_end(self) -> float:
        return self.window_start + self.params.clip_seconds

    def push(self, frame: Frame) -> list[Clip]:
        if self._buf and frame.t <= self._buf[-1].t:
            return []  # out-of-order or repeated timestamp: keep time strictly increasing
        if frame.key < self.window_start - _EPS:
            self._before = frame
            return []
        self._buf.append(frame)
        out = []
        while self._buf and self._buf[-1].key >= self.window_end - _EPS:
            clip = self._emit(last=False)
            if clip is not None:
                out.append(clip)
        return out

    def finish(self, duration: float | None = None) -> list[Clip]:
        """Emit the remaining windows; the final one is marked ``last``."""
        out: list[Clip] = []
        while self._buf and self._buf[-1].key >= self._covered_until - _EPS:
            clip = self._emit(last=True, duration=duration)
            if clip is None:
                break
            out.append(clip)
        if out:
            out = [*out[:-1], Clip(out[-1].index, out[-1].t_start, out[-1].t_end, out[-1].frames, last=True)]
        return out

    def _emit(self, *, last: bool, duration: float | None = None) -> Clip | None:
        start, end = self.window_start, self.window_end
        frames = [f for f in self._buf if start - _EPS <= f.key < end - _EPS]
        clip = None
        if frames and (not last or frames[-1].key > self._covered_until - _EPS):
            clip = self._make(frames, start, end, duration)
            self._covered_until = end
        self.index += 1
        self._drop_before(self.window_start)
        return clip if clip is not None or not last else None

    def _make(self, frames: list[Frame], start: float, end: float, duration: float | None) -> Clip:
        if len(frames) % 2:
            after = [f for f in self._buf if f.key >= end - _EPS]
            if self._before is not None:
                frames.insert(0, self._before)
            elif after:
                frames.append(after[0])
            else:  # a source with too few frames: repeat the last, as GLM's own processor would
                frames.append(frames[-1])
        t_start = min(start, frames[0].key)
        t_end = max(frames[-1].key, min(end, frames[-1].key + 1.0 / self.params.fps))
        if duration is not None:
            t_end = max(frames[-1].key, min(t_end, duration))
        return Clip(self.index, round(t_start, 6), round(t_end, 6), tuple(frames))

    def _drop_before(self, t: float) -> None:
        while self._buf and self._buf[0].key < t - _EPS:
            self._before = self._buf.popleft()


def cut(frames: Iterable[Frame], params: ClipParams, duration: float | None = None) -> Iterator[Clip]:
    """Convenience: all clips of a finite frame sequence."""
    clipper = Clipper(params)
    for frame in frames:
        yield from clipper.push(frame)
    yield from clipper.finish(duration)
