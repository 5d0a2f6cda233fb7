"""Frames, source facts, resize rules and the streaming fps sampler shared by every decoder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

Clock = Literal["pts", "arrival"]
PATCH = 28  # GLM-4.5V: patch 14 x spatial merge 2


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled, resized RGB frame."""

    image: np.ndarray  # H x W x 3 uint8
    t: float  # media seconds from the start of the stream
    wall: float | None = None  # unix seconds, live sources only
    clock: Clock = "pts"


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a decoder learned when it opened a source."""

    width: int  # displayed size (after rotation)
    height: int
    out_width: int
    out_height: int
    fps: float | None
    duration: float | None  # seconds; None for live
    codec: str
    rotation: int = 0
    live: bool = False
    backend: str = ""
    skip_frame: str = "none"


class SourceError(RuntimeError):
    """A source that cannot be read. ``fatal`` means retrying cannot help (bad file, no video)."""

    def __init__(self, message: str, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.fatal = fatal


def round_to_patch(x: float) -> int:
    return max(PATCH, round(x / PATCH) * PATCH)


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Shrink (never enlarge) so the long side fits ``max_side``; both sides become multiples of 28."""
    if width <= 0 or height <= 0:
        raise SourceError(f"invalid frame size {width}x{height}")
    scale = min(1.0, max_side / max(width, height))
    return round_to_patch(width * scale), round_to_patch(height * scale)


class FrameSampler:
    """Picks, from frames arriving in time order, the one nearest each target time start + k/fps.

    Streaming, so it works for live sources; a frame is never emitted twice, so a source slower than
    ``fps`` yields fewer frames rather than duplicates.
    """

    def __init__(self, fps: float, start: float = 0.0) -> None:
        self.period = 1.0 / fps
        self.k = max(0, int(np.ceil(start * fps - 1e-6)))
        self._prev: tuple[float, object] | None = None
        self._last_t: float | None = None
        self._interval = 0.0  # between the last two source frames

    @property
    def next_target(self) -> float:
        return self.k * self.period

    def push(self, t: float, item: object) -> list[tuple[float, object]]:
        """Feed one frame (time, payload); returns the frames chosen so far, in order."""
        out: list[tuple[float, object]] = []
        if self._last_t is not None:
            self._interval = t - self._last_t
        self._last_t = t
        while t >= self.next_target - 1e-9:
            target = self.next_target
            if self._prev is not None and abs(self._prev[0] - target) < abs(t - target):
                chosen = self._prev
            else:
                chosen = (t, item)
            if not out or out[-1][0] != chosen[0]:
                out.append(chosen)
            self.k += 1
            # skip targets the chosen frame already stands for, so it is not emitted again
            while self.next_target <= chosen[0] + 1e-9:
                self.k += 1
            if chosen[0] == t:
                self._prev = None
                return out
        self._prev = (t, item)
        return out

    def finish(self, end: float | None = None) -> list[tuple[float, object]]:
        """At end of stream: the last held frame, if the next target falls before the stream ends.

        ``end`` is the stream's duration where known; otherwise the last frame is assumed to last as long
        as the gap before it.
        """
        end = end if end is not None else (self._prev[0] + self._interval if self._prev else None)
        if self._prev is not None and end is not None and self.next_target < end - 1e-6:
            held, self._prev = self._prev, None
            return [held]
        return []


def sample_times(
    timestamps: Iterable[float], fps: float, start: float = 0.0, end: float | None = None
) -> Iterator[int]:
    """Indices into ``timestamps`` (sorted frame times) that :class:`FrameSampler` would choose."""
    sampler = FrameSampler(fps, start)
    for i, t in enumerate(timestamps):
        for _, idx in sampler.push(t, i):
            yield idx  # type: ignore[misc]
    for _, idx in sampler.finish(end):
        yield idx  # type: ignore[misc]
