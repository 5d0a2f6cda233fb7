"""Decode in a child process under a watchdog.

A decoder can hang in native code while holding the GIL (decord#373) or crash the interpreter; in a
thread that would take the whole worker with it. In a child process the parent simply stops waiting:
no frame for ``stall_timeout_s`` and the child is killed, then a :class:`SourceError` says why.
The bounded queue also gives backpressure: a file decoder waits for a slow Kafka producer, never drops.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from vstream.media.frames import Frame, SourceError, SourceInfo
from vstream.media.pyav_source import PyAVReader
from vstream.media.reader import (
    ChildMessage,
    DecodeSpec,
    EndMessage,
    ErrorMessage,
    FrameMessage,
    InfoMessage,
    Reader,
)
from vstream.schema import redact_text

logger = logging.getLogger(__name__)

_CTX = mp.get_context("spawn")  # fork would copy the parent's Kafka/Redis threads and sockets
_QUEUE_FRAMES = 8
_STARTUP_GRACE_S = 20.0  # spawning imports numpy/av/decord before the first frame
_POLL_S = 0.25


def _exit_with_parent(parent: int) -> None:
    """A parent killed with SIGKILL cannot clean up: without this its decoder would block forever on a
    full queue, holding the source open (and a camera connection) as an orphan."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _child_main(spec: DecodeSpec, out: Any, parent: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    try:
        reader = _make_reader(spec)
        out.put(InfoMessage(reader.info))
        for frame in reader.frames():
            out.put(FrameMessage(frame))
        reader.close()
        out.put(EndMessage())
    except SourceError as exc:
        out.put(ErrorMessage(str(exc), exc.fatal))
    except Exception as exc:  # anything else in a decoder is a bug or a broken file: report it, never hang
        message = redact_text(f"decoder failed: {type(exc).__name__}: {exc}")
        out.put(ErrorMessage(message, not spec.live))
    except KeyboardInterrupt:
        pass


def _make_reader(spec: DecodeSpec) -> Reader:
    if spec.backend == "decord":
        from vstream.media.decord_source import DecordReader

        return DecordReader(spec)
    return PyAVReader(spec)


class DecodeProcess:
    """Parent side: ``info`` once opened, then iterate :meth:`frames`; always :meth:`close`."""

    def __init__(
        self, spec: DecodeSpec, *, stall_timeout_s: float, cancel: Callable[[], bool] | None = None
    ) -> None:
        self.spec = spec
        self.stall_timeout_s = stall_timeout_s
        self._queue: Any = _CTX.Queue(maxsize=_QUEUE_FRAMES)
        self._proc = _CTX.Process(
            target=_child_main, args=(spec, self._queue, os.getpid()), daemon=True, name="vstream-decode"
        )
        self._proc.start()
        self.ended = False  # the source reached its end (rather than failing or stalling)
        first = self._get(stall_timeout_s + _STARTUP_GRACE_S, cancel)
        if not isinstance(first, InfoMessage):
            self.close()
            raise SourceError(f"decoder sent {type(first).__name__} before source info")
        self.info: SourceInfo = first.info

    def frames(self) -> Iterator[Frame]:
        try:
            while True:
                msg = self._get(self.stall_timeout_s)
                if isinstance(msg, EndMessage):
                    self.ended = True
                    return
                if isinstance(msg, FrameMessage):
                    yield msg.frame
        finally:
            self.close()

    def _get(self, timeout: float, cancel: Callable[[], bool] | None = None) -> ChildMessage:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg: ChildMessage = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if cancel is not None and cancel():  # an open can take the whole stall timeout
                    self.close()
                    raise SourceError(f"opening {self.spec.label} was cancelled") from None
                if not self._proc.is_alive():
                    code = self._proc.exitcode
                    raise SourceError(
                        f"decoder process died (exit code {code}) reading {self.spec.label}",
                        fatal=not self.spec.live,
                    ) from None
                if time.monotonic() > deadline:
                    self.close()
                    raise SourceError(
                        f"decoder stalled: no frame for {timeout:.0f} s from {self.spec.label}; killed it",
                        fatal=not self.spec.live,
                    ) from None
                continue
            if isinstance(msg, ErrorMessage):
                self.close()
                raise SourceError(msg.message, fatal=msg.fatal)
            return msg

    def close(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=5)
        self._queue.cancel_join_thread()
        self._queue.close()
