"""The shared worker skeleton: ids, the stop signals, heartbeats (the last against the real Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from vstream.config import Settings
from vstream.names import Keys
from vstream.redis_conn import connect_async
from workers.base import (
    Heartbeat,
    HeartbeatWriter,
    SignalHandler,
    new_worker_id,
    restore_signals,
    stop_on_signals,
)


class Beat(Heartbeat):
    jobs: int


@pytest.fixture
def restored() -> Iterator[None]:
    before: dict[int, SignalHandler] = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    restore_signals(before)


def test_worker_ids_are_unique_and_name_the_process() -> None:
    ids = {new_worker_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(f"-{os.getpid()}-" in i for i in ids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_sets_the_event(sig: signal.Signals, restored: None) -> None:
    stop = threading.Event()
    previous = stop_on_signals(stop)
    assert set(previous) == {signal.SIGTERM, signal.SIGINT}
    signal.raise_signal(sig)  # the handler runs before raise_signal returns (main thread)
    assert stop.is_set()


def test_a_stop_signal_calls_a_callback_and_restore_puts_back_the_handler(restored: None) -> None:
    calls: list[int] = []
    mine = signal.getsignal(signal.SIGTERM)
    previous = stop_on_signals(lambda: calls.append(1), signals=[signal.SIGTERM])
    signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGTERM)  # a second signal only asks again
    assert calls == [1, 1]
    restore_signals(previous)
    assert signal.getsignal(signal.SIGTERM) == mine


def test_heartbeat_due_every(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("workers.base.time.monotonic", lambda: clock[0])
    writer = HeartbeatWriter(Keys("t:"), "ingest", "w1", ttl_s=30, every_s=5.0)
    assert writer.key == Keys("t:").worker_heartbeat("ingest", "w1")
    assert writer.due(), "the first beat is always due"
    writer.write(_NoRedis(), Heartbeat(worker_id="w1"))  # type: ignore[arg-type]
    clock[0] += 4.9
    assert not writer.due()
    clock[0] += 0.1
    assert writer.due()


class _NoRedis:
    def set(self, *_: object, **__: object) -> None:
        pass


@pytest.mark.integration
def test_heartbeat_written_with_its_ttl(settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis.key_prefix)
    writer = HeartbeatWriter(keys, "ingest", "w-sync", ttl_s=30)
    before = time.time()
    writer.write(redis_client, Beat(worker_id="w-sync", jobs=2))
    value = json.loads(redis_client.get(writer.key) or b"{}")
    assert value["worker_id"] == "w-sync" and value["jobs"] == 2
    assert before - 0.01 <= value["at"] <= time.time() + 0.01
    assert 25 <= redis_client.ttl(writer.key) <= 30

    async def beat_async() -> None:
        client = connect_async(settings.redis)
        try:
            await HeartbeatWriter(keys, "webhooks", "w-async", ttl_s=60).awrite(
                client, Heartbeat(worker_id="w-async")
            )
        finally:
            await client.aclose()

    asyncio.run(beat_async())
    key = keys.worker_heartbeat("webhooks", "w-async")
    assert json.loads(redis_client.get(key) or b"{}")["worker_id"] == "w-async"
    assert 55 <= redis_client.ttl(key) <= 60
    found = {k.decode() for k in redis_client.scan_iter(keys.worker_heartbeat("ingest", "*"))}
    assert found == {writer.key}, "readers find a kind's beats by pattern"
