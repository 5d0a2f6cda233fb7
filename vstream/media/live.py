"""Live streams: reconnect with capped exponential backoff, a bounded drop-oldest buffer, one timeline.

A live source must never make the pipeline fall behind: when clipping or Kafka is slower than the
camera, the oldest buffered frame is dropped and counted, so what is sent stays current.

Every connection (and every segment the decoder splits one at a timestamp discontinuity) restarts its
media clock at 0 with its own wall-clock anchor; segments are laid end to end on the sampling grid at
their real wall-clock distance, and the first frame of each carries a :class:`Gap`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace

from vstream.media.child import DecodeProcess
from vstream.media.frames import Frame, Gap, SourceError, SourceInfo
from vstream.media.reader import DecodeSpec
from vstream.retry import backoff_s

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 10.0
    attempts: int = 0  # consecutive failures before giving up; 0 = no limit (give_up_s decides)
    give_up_s: float = 300.0  # give up after this long without a frame; 0 = never

    def delay(self, failures: int) -> float:
        return backoff_s(failures, self.initial_s, self.max_s, jitter=(0.8, 1.2))

    def exhausted(self, failures: int, since_s: float) -> bool:
        return bool(self.attempts and failures >= self.attempts) or bool(
            self.give_up_s and since_s >= self.give_up_s
        )


class DropOldestBuffer:
    """Bounded FIFO; a put into a full buffer evicts the oldest item and counts it."""

    def __init__(self, maxlen: int) -> None:
        self._items: deque[Frame] = deque()
        self._maxlen = maxlen
        self._cond = threading.Condition()
        self._closed = False
        self._error: SourceError | None = None
        self.dropped = 0

    def put(self, item: Frame) -> None:
        with self._cond:
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self.dropped += 1
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    logger.warning("live buffer full: dropped %d frames so far (oldest first)", self.dropped)
            self._items.append(item)
            self._cond.notify()

    def close(self, error: SourceError | None = None) -> None:
        with self._cond:
            self._closed, self._error = True, error
            self._cond.notify_all()

    def get(self) -> Frame | None:
        """Next frame; None once closed and drained. Raises the error the producer closed with."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait(0.5)
            if self._items:
                return self._items.popleft()
            if self._error is not None:
                raise self._error
            return None


class LiveSource:
    """Reads a live URL in a background thread, reconnecting, into a :class:`DropOldestBuffer`.

    A URL whose first connection reports a duration (a file over HTTP, a finished HLS playlist) is finite:
    it ends at its end instead of being read again, keeps its own media times (no wall clock), and a
    reconnection after an error skips what was already delivered. A live URL that later reconnects to a
    finite resource (an HLS playlist that got ``#EXT-X-ENDLIST``) has ended: it is not replayed.
    """

    def __init__(
        self,
        spec: DecodeSpec,
        *,
        stall_timeout_s: float,
        buffer_frames: int,
        backoff: Backoff,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec, self.backoff, self.stall_timeout_s = spec, backoff, stall_timeout_s
        self.buffer = DropOldestBuffer(buffer_frames)
        self.reconnects = 0
        self.gaps = 0
        self.finite = False
        self._stop = threading.Event()
        self._cancel = stop  # the caller's stop (job pause, drain): honoured while the first connect waits
        self._ready = threading.Event()  # the first connection succeeded or the source gave up
        self._info: SourceInfo | None = None
        self._error: SourceError | None = None
        self._timeline = _Timeline(spec.fps)
        self._last_frame_at = time.monotonic()
        # The first connect runs in the reader thread: a stream that never starts must stay cancellable.
        self._thread = threading.Thread(target=self._start, name="vstream-live", daemon=True)
        self._thread.start()

    @property
    def info(self) -> SourceInfo:
        """What the first connection reported; waits for it. Raises the SourceError of a source that gave
        up first. Once stopped before any connection, a provisional live info (nothing will be read)."""
        while not self._ready.wait(0.2):
            if self._stopping():
                return _provisional(self.spec)
        if self._error is not None:
            raise self._error
        return self._info if self._info is not None else _provisional(self.spec)

    def _stopping(self) -> bool:
        return self._stop.is_set() or (self._cancel is not None and self._cancel.is_set())

    def _start(self) -> None:
        try:
            first = self._connect_first()
        except SourceError as exc:
            stopped = self._stopping()  # stopped before the stream ever started: not a failure
            self._error = None if stopped else exc
            self._ready.set()
            self.buffer.close(None if stopped else exc)
            return
        self.finite = first.info.duration is not None
        self._info = replace(first.info, live=False, restarts_at_zero=False) if self.finite else first.info
        self._ready.set()
        self._run(first)

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    def _connect_first(self) -> DecodeProcess:
        failures, started = 0, time.monotonic()
        while True:
            try:
                return DecodeProcess(self.spec, stall_timeout_s=self.stall_timeout_s, cancel=self._stopping)
            except SourceError as exc:
                failures += 1
                waited = time.monotonic() - started
                if exc.fatal or self.backoff.exhausted(failures, waited) or self._stopping():
                    raise SourceError(
                        f"{exc} (gave up after {failures} attempts in {waited:.0f} s)", fatal=exc.fatal
                    ) from None
                self._sleep(failures, exc)

    def _sleep(self, failures: int, exc: Exception) -> None:
        delay = self.backoff.delay(failures)
        logger.warning("live source %s: %s; retrying in %.1f s", self.spec.label, exc, delay)
        deadline = time.monotonic() + delay
        while not self._stopping() and (left := deadline - time.monotonic()) > 0:
            self._stop.wait(min(left, 0.2))

    def _reconnect(self, failures: int) -> DecodeProcess | None:
        """One connection attempt; None to try again later. Raises SourceError when it is time to give up."""
        try:
            proc = DecodeProcess(self.spec, stall_timeout_s=self.stall_timeout_s, cancel=self._stopping)
        except SourceError as exc:
            outage = time.monotonic() - self._last_frame_at
            if exc.fatal or self.backoff.exhausted(failures, outage):
                raise SourceError(
                    f"{exc} (gave up after {failures} reconnects, {outage:.0f} s without frames)",
                    fatal=False,
                ) from None
            self._sleep(failures, exc)
            return None
        self.reconnects += 1
        return proc

    def _run(self, proc: DecodeProcess | None) -> None:
        failures = 0
        try:
            while not self._stopping():
                if proc is None:
                    failures += 1
                    proc = self._reconnect(failures)
                    if proc is None:
                        continue
                    if proc.info.duration is not None and not self.finite:
                        logger.info("live source %s has ended (now a finite resource)", self.spec.label)
                        proc.close()
                        break
                got = self._pump(proc)
                if got:
                    failures = 0
                if proc.ended and self.finite:
                    break
                proc = None
                if not self._stopping() and failures:
                    self._sleep(failures, SourceError("stream ended or stalled"))
            self.buffer.close()
        except SourceError as exc:
            self.buffer.close(exc)

    def _pump(self, proc: DecodeProcess) -> int:
        """Copy one connection's frames into the buffer on the stream's timeline; returns frames read."""
        n = 0
        self._timeline.new_connection()
        try:
            for frame in proc.frames():
                if self._stopping():
                    break
                placed = self._timeline.place(frame, finite=self.finite)
                if placed is None:
                    continue
                if placed.gap is not None:
                    self.gaps += 1
                    logger.warning(
                        "live source %s: %s gap of %.1f s before media time %.2f",
                        self.spec.label,
                        placed.gap.reason,
                        placed.gap.seconds,
                        placed.t,
                    )
                self._last_frame_at = time.monotonic()
                self.buffer.put(placed)
                n += 1
        except SourceError as exc:
            logger.warning("live source %s: %s", self.spec.label, exc)
        finally:
            proc.close()
        return n

    def frames(self) -> Iterator[Frame]:
        while (frame := self.buffer.get()) is not None:
            yield frame

    def close(self) -> None:
        self._stop.set()
        self.buffer.close()
        self._thread.join(timeout=10)


def _provisional(spec: DecodeSpec) -> SourceInfo:
    """The info of a live source stopped before it ever connected: live, size unknown."""
    return SourceInfo(
        width=0,
        height=0,
        out_width=0,
        out_height=0,
        fps=spec.fps,
        duration=None,
        codec="",
        live=True,
        backend=spec.backend,
        restarts_at_zero=True,
    )


class _Timeline:
    """Lays connections and segments end to end: media time follows the wall clock across outages and
    every sample time stays on the k/fps grid."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.epoch: float | None = None  # wall time of media time 0 of the whole stream
        self.offset = 0.0
        self.last_t = self.last_key = -1.0
        self.last_wall: float | None = None
        self._fresh = True  # the next frame starts a connection

    def new_connection(self) -> None:
        self._fresh = True

    def place(self, frame: Frame, *, finite: bool) -> Frame | None:
        if finite:  # its own media times; after a reconnection skip what was delivered
            if frame.t <= self.last_t:
                return None
            self.last_t = frame.t
            return replace(frame, wall=None)
        gap = frame.gap
        if self._fresh or (gap is not None and gap.restart):
            gap = self._start_segment(frame, gap)
        t, key = round(self.offset + frame.t, 6), round(self.offset + frame.key, 6)
        if t <= self.last_t or key <= self.last_key:
            return None  # cannot happen with a restarted clock on the grid; never send time backwards
        wall = frame.wall
        if wall is not None and self.last_wall is not None and wall <= self.last_wall:
            # a new segment's anchor can sit a little earlier than the last one's (it was settled on
            # fewer frames): keep wall time increasing across segments, as it is within one
            wall = round(self.last_wall + 1e-3, 6)
        self.last_t, self.last_key, self.last_wall = t, key, wall
        return replace(frame, t=t, slot=key, gap=gap, wall=wall)

    def _start_segment(self, frame: Frame, gap: Gap | None) -> Gap | None:
        fresh, self._fresh = self._fresh, False
        anchor = (frame.wall - frame.t) if frame.wall is not None else time.time() - frame.t
        if self.epoch is None:
            self.epoch, self.offset = anchor, 0.0
            return gap
        # Snap to the grid, and never onto or before the last sample time.
        snapped = round((anchor - self.epoch) / self.period) * self.period
        self.offset = max(snapped, self.last_key + self.period - frame.key)
        self.offset = round(self.offset / self.period) * self.period
        lost = (frame.wall - self.last_wall) if frame.wall is not None and self.last_wall is not None else 0.0
        if fresh:
            return Gap("reconnect", round(max(0.0, lost), 3), restart=True)
        return gap if gap is not None else Gap("discontinuity", round(max(0.0, lost), 3), restart=True)
