"""Cut a time-ordered stream of sampled frames into overlapping windows.

Window ``k`` covers media time ``[k * step, k * step + clip_seconds)`` with ``step = clip - overlap``.
Frames are placed in windows by the sample time they were chosen for (``Frame.key``), not by their own
timestamp, which may sit a source frame earlier or later (B-frame skipping, variable frame rate): so
windows are exact on the sampling grid while every frame still reports its true time.
Each clip holds an even number of frames, at least two, because GLM-4.5V groups frames in pairs: an odd
window borrows the frame just before it, else the one just after (still real footage, no duplicate), and
only a source with a single frame in total gets that frame twice.

A clip never spans a gap (a live reconnect, a stall, a frame-size change): the gap closes the open
windows with what they have, and the first clip after it carries a :class:`ClipGap`. Frames after the
gap go to windows that hold nothing from before it (the first may start a little before its window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from vstream.media.frames import Frame
from vstream.schema import ClipGap, ClipParams

_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Clip:
    index: int
    t_start: float
    t_end: float
    frames: tuple[Frame, ...]
    last: bool = False
    gap: ClipGap | None = None

    @property
    def width(self) -> int:
        return int(self.frames[0].image.shape[1])

    @property
    def height(self) -> int:
        return int(self.frames[0].image.shape[0])

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
        self._last: Frame | None = None  # the newest frame pushed
        self._gap: ClipGap | None = None  # to mark on the next clip
        self._floor: float | None = None  # after a gap: the next window also takes frames from here

    @property
    def window_start(self) -> float:
        return self.index * self.params.step_seconds

    @property
    def window_end(self) -> float:
        return self.window_start + self.params.clip_seconds

    def push(self, frame: Frame) -> list[Clip]:
        if self._last is not None and frame.t <= self._last.t:
            return []  # out-of-order or repeated timestamp: keep time strictly increasing
        out = self._break(frame) if self._is_gap(frame) else []
        self._last = frame
        if frame.key < self.window_start - _EPS and self._floor is None:
            self._before = frame
            return out
        self._buf.append(frame)
        while self._buf and self._buf[-1].key >= self.window_end - _EPS:
            clip = self._emit(last=False)
            if clip is not None:
                out.append(clip)
        return out

    def finish(self, duration: float | None = None, *, last: bool = True) -> list[Clip]:
        """Emit the remaining windows; the final one is marked ``last`` (unless the stream goes on
        elsewhere: a live job that is interrupted or retried)."""
        out: list[Clip] = []
        while self._buf and self._buf[-1].key >= self._covered_until - _EPS:
            clip = self._emit(last=True, duration=duration)
            if clip is None:
                break
            out.append(clip)
        if out and last:
            out[-1] = replace(out[-1], last=True)
        return out

    def _is_gap(self, frame: Frame) -> bool:
        prev = self._last
        resized = prev is not None and prev.image.shape != frame.image.shape
        return frame.gap is not None or resized

    def _break(self, frame: Frame) -> list[Clip]:
        """Close the open windows with the frames before the gap; the next window starts after it."""
        out = self.finish(last=False)
        self._buf.clear()  # what is left was already sent in an overlapping window
        prev = self._last
        reason = frame.gap.reason if frame.gap is not None else "resize"
        t_before = prev.t if prev is not None else None
        seconds = round(frame.t - t_before, 6) if t_before is not None and reason != "resize" else 0.0
        self._gap = ClipGap(reason=reason, t_before=t_before, t_after=frame.t, seconds=max(0.0, seconds))
        self._before = None
        step, clip = self.params.step_seconds, self.params.clip_seconds
        first = max(0, int((frame.key - clip) // step) + 1)  # the earliest window holding the frame
        self.index = max(self.index, first)
        self._floor = frame.key if frame.key < self.window_start - _EPS else None
        return out

    def _emit(self, *, last: bool, duration: float | None = None) -> Clip | None:
        start, end = self.window_start, self.window_end
        low = min(start, self._floor) if self._floor is not None else start
        frames = [f for f in self._buf if low - _EPS <= f.key < end - _EPS]
        clip = None
        if frames and (not last or frames[-1].key > self._covered_until - _EPS):
            clip = self._make(frames, start, end, duration)
            self._covered_until = end
            if self._gap is not None:
                clip, self._gap = replace(clip, gap=self._gap), None
        self._floor = None
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
