"""Live streams: reconnect with exponential backoff, a bounded drop-oldest buffer, continuous time.

A live source must never make the pipeline fall behind: when clipping or Kafka is slower than the
camera, the oldest buffered frame is dropped and counted, so what is sent stays current.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace

from vstream.media.child import DecodeProcess
from vstream.media.frames import Frame, SourceError, SourceInfo
from vstream.media.pyav_source import DecodeSpec
from vstream.schema import redact_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0
    attempts: int = 5  # consecutive failures before giving up; 0 = never give up

    def delay(self, failures: int) -> float:
        base = min(self.max_s, self.initial_s * 2 ** max(0, failures - 1))
        return base * random.uniform(0.8, 1.2)


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
    reconnection after an error skips what was already delivered.
    """

    def __init__(
        self, spec: DecodeSpec, *, stall_timeout_s: float, buffer_frames: int, backoff: Backoff
    ) -> None:
        self.spec, self.backoff, self.stall_timeout_s = spec, backoff, stall_timeout_s
        self.buffer = DropOldestBuffer(buffer_frames)
        self.reconnects = 0
        self._stop = threading.Event()
        self._last_t = -1.0
        self._last_arrival = 0.0
        first = self._connect_first()
        self.finite = first.info.duration is not None
        self.info: SourceInfo = (
            replace(first.info, live=False, restarts_at_zero=False) if self.finite else first.info
        )
        self._thread = threading.Thread(target=self._run, args=(first,), name="vstream-live", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    def _connect_first(self) -> DecodeProcess:
        failures = 0
        while True:
            try:
                return DecodeProcess(self.spec, stall_timeout_s=self.stall_timeout_s)
            except SourceError as exc:
                failures += 1
                if (
                    exc.fatal
                    or (self.backoff.attempts and failures >= self.backoff.attempts)
                    or self._stop.is_set()
                ):
                    raise SourceError(f"{exc} (gave up after {failures} attempts)", fatal=exc.fatal) from None
                self._sleep(failures, exc)

    def _sleep(self, failures: int, exc: Exception) -> None:
        delay = self.backoff.delay(failures)
        logger.warning("live source %s: %s; retrying in %.1f s", redact_url(self.spec.source), exc, delay)
        self._stop.wait(delay)

    def _run(self, proc: DecodeProcess | None) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                if proc is None:
                    try:
                        proc = DecodeProcess(self.spec, stall_timeout_s=self.stall_timeout_s)
                        self.reconnects += 1
                    except SourceError as exc:
                        failures += 1
                        if self.backoff.attempts and failures >= self.backoff.attempts:
                            raise SourceError(
                                f"{exc} (gave up after {failures} reconnects)", fatal=False
                            ) from None
                        self._sleep(failures, exc)
                        continue
                got, ended = self._pump(proc)
                failures = 0 if got else failures + 1
                proc = None
                if ended and self.finite:
                    break
                if not self._stop.is_set():
                    self._sleep(max(failures, 1), SourceError("stream ended or stalled"))
            self.buffer.close()
        except SourceError as exc:
            self.buffer.close(exc)

    def _pump(self, proc: DecodeProcess) -> tuple[int, bool]:
        """Copy one connection's frames into the buffer on a continuous media clock; returns frames read
        and whether the source reached its end (rather than failing or stalling)."""
        offset = 0.0
        if self._last_t >= 0 and not self.finite:
            offset = self._last_t + max(time.time() - self._last_arrival, 1e-3)
        n, ended = 0, False
        try:
            for frame in proc.frames():
                if self._stop.is_set():
                    break
                t = round(offset + frame.t, 6)
                if t <= self._last_t:
                    continue
                self._last_t, self._last_arrival = t, time.time()
                wall = None if self.finite else frame.wall
                self.buffer.put(replace(frame, t=t, slot=round(offset + frame.key, 6), wall=wall))
                n += 1
            ended = not self._stop.is_set()
        except SourceError as exc:
            logger.warning("live source %s: %s", redact_url(self.spec.source), exc)
        finally:
            proc.close()
        return n, ended

    def frames(self) -> Iterator[Frame]:
        while (frame := self.buffer.get()) is not None:
            yield frame

    def close(self) -> None:
        self._stop.set()
        self.buffer.close()
        self._thread.join(timeout=10)
