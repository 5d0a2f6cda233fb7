"""What every vstream worker does the same way: its id, a graceful drain on SIGTERM/SIGINT, its heartbeat.

A heartbeat is a JSON value under ``Keys.worker_heartbeat(kind, worker_id)`` with a TTL a few beats long,
so a worker that dies disappears by itself; readers scan ``worker_heartbeat(kind, "*")``. Each kind adds
its own fields to :class:`Heartbeat` (the infer worker's model is ``vstream.metrics.InferHeartbeat``,
which the API reads).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from vstream.names import Keys

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def new_worker_id() -> str:
    """``<host>-<pid>-<6 hex>``: unique across restarts of a pid, and says where the worker runs."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def stop_on_signals(
    stop: threading.Event | Callable[[], object], signals: Iterable[int] = STOP_SIGNALS
) -> dict[int, SignalHandler]:
    """On each of ``signals``, set the event (or call ``stop``): the worker finishes what is in flight
    and returns. Returns the handlers it replaced, for :func:`restore_signals`. Main thread only."""
    request_stop = stop.set if isinstance(stop, threading.Event) else stop

    def handler(_signum: int, _frame: FrameType | None) -> None:
        request_stop()  # no logging here: a handler that writes can re-enter a write it interrupted

    return {sig: signal.signal(sig, handler) for sig in signals}


def restore_signals(previous: dict[int, SignalHandler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


class Heartbeat(BaseModel):
    """The fields every worker's heartbeat has; a worker kind subclasses it with its own counters."""

    worker_id: str
    at: float = Field(default_factory=lambda: round(time.time(), 3))  # wall clock of the beat


class HeartbeatWriter:
    """Writes one worker's beats with a TTL of ``ttl_s``; ``due()`` says when the next one is wanted
    (every ``every_s``; 0: always), so a busy loop does not write Redis on every turn."""

    def __init__(self, keys: Keys, kind: str, worker_id: str, *, ttl_s: int, every_s: float = 0.0) -> None:
        self.key = keys.worker_heartbeat(kind, worker_id)
        self.ttl_s, self.every_s = ttl_s, every_s
        self._last: float | None = None

    def due(self) -> bool:
        return self._last is None or time.monotonic() - self._last >= self.every_s

    def write(self, client: redis.Redis, beat: BaseModel) -> None:
        client.set(self.key, beat.model_dump_json(), ex=self.ttl_s)
        self._last = time.monotonic()

    async def awrite(self, client: aioredis.Redis, beat: BaseModel) -> None:
        await client.set(self.key, beat.model_dump_json(), ex=self.ttl_s)
        self._last = time.monotonic()
