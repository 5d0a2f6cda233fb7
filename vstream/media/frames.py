"""Frames, source facts, resize rules and the streaming fps sampler shared by every decoder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from vstream.schema import redact_text

Clock = Literal["pts", "arrival"]
GapReason = Literal["reconnect", "stall", "discontinuity", "resize"]
PATCH = 28  # GLM-4.5V: patch 14 x spatial merge 2


@dataclass(frozen=True, slots=True)
class Gap:
    """Footage is missing just before the frame that carries this: clips must not span it."""

    reason: GapReason
    seconds: float = 0.0  # wall seconds lost, as far as the reader can tell
    restart: bool = False  # the media clock restarts at 0 on this frame (a new segment of a live stream)


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled, resized RGB frame."""

    image: np.ndarray  # H x W x 3 uint8
    t: float  # media seconds from the start of the stream (the frame's own PTS)
    wall: float | None = None  # unix seconds, live sources only
    clock: Clock = "pts"
    slot: float | None = None  # the sample time k/fps this frame was chosen for (None: t)
    gap: Gap | None = None  # set on the first frame after a reconnect or discontinuity

    @property
    def key(self) -> float:
        """Where the frame sits on the sampling grid: clip windows are cut on this."""
        return self.t if self.slot is None else self.slot


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
    # Every (re)connection starts the media clock at 0 and cannot seek (live streams): a resumed job
    # continues the timeline itself instead of seeking.
    restarts_at_zero: bool = False


class SourceError(RuntimeError):
    """A source that cannot be read. ``fatal`` means retrying cannot help (bad file, no video).

    The message loses any ``user:password@`` of a URL it quotes: it reaches logs, job records and the
    ingest-errors topic.
    """

    def __init__(self, message: str, *, fatal: bool = True) -> None:
        super().__init__(redact_text(message))
        self.fatal = fatal


def round_to_patch(x: float) -> int:
    return max(PATCH, round(x / PATCH) * PATCH)


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Shrink (never enlarge) so the long side fits ``max_side``; both sides become multiples of 28."""
    if width <= 0 or height <= 0:
        raise SourceError(f"invalid frame size {width}x{height}")
    scale = min(1.0, max_side / max(width, height))
    return round_to_patch(width * scale), round_to_patch(height * scale)


class Pick(NamedTuple):
    t: float  # the chosen frame's own time
    item: object
    slot: float  # the sample time k/fps it stands for: clips are cut on this grid


class FrameSampler:
    """Picks, from frames arriving in time order, the one nearest each target time k/fps.

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

    def push(self, t: float, item: object) -> list[Pick]:
        """Feed one frame (time, payload); returns the frames chosen so far, in order."""
        out: list[Pick] = []
        if self._last_t is not None:
            self._interval = t - self._last_t
        self._last_t = t
        while t >= self.next_target - 1e-9:
            target = self.next_target
            if self._prev is not None and abs(self._prev[0] - target) < abs(t - target):
                chosen = self._prev
            else:
                chosen = (t, item)
            if abs(chosen[0] - target) > self.period + 1e-6:
                self.k += 1  # a hole in the source (an outage): no frame stands for this target
                continue
            if not out or out[-1].t != chosen[0]:
                out.append(Pick(chosen[0], chosen[1], round(target, 6)))
            self.k += 1
            # skip targets the chosen frame already stands for, so it is not emitted again
            while self.next_target <= chosen[0] + 1e-9:
                self.k += 1
            if chosen[0] == t:
                self._prev = None
                return out
        self._prev = (t, item)
        return out

    def finish(self, end: float | None = None) -> list[Pick]:
        """At end of stream: the last held frame, if the next target falls before the stream ends.

        ``end`` is the stream's duration where known; otherwise the last frame is assumed to last as long
        as the gap before it.
        """
        end = end if end is not None else (self._prev[0] + self._interval if self._prev else None)
        if self._prev is not None and end is not None and self.next_target < end - 1e-6:
            (t, item), self._prev = self._prev, None
            return [Pick(t, item, round(self.next_target, 6))]
        return []


def sample_slots(
    timestamps: Iterable[float], fps: float, start: float = 0.0, end: float | None = None
) -> Iterator[tuple[int, float]]:
    """(index into ``timestamps``, slot) for each frame :class:`FrameSampler` would choose."""
    sampler = FrameSampler(fps, start)
    for i, t in enumerate(timestamps):
        for pick in sampler.push(t, i):
            yield pick.item, pick.slot  # type: ignore[misc]
    for pick in sampler.finish(end):
        yield pick.item, pick.slot  # type: ignore[misc]


def sample_times(
    timestamps: Iterable[float], fps: float, start: float = 0.0, end: float | None = None
) -> Iterator[int]:
    """Indices into ``timestamps`` (sorted frame times) that :class:`FrameSampler` would choose."""
    for index, _ in sample_slots(timestamps, fps, start, end):
        yield index
