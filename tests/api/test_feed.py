"""Live feed (Server-Sent Events) against the real app on real Redis, changes written by ResultStore.commit.

Every read is bounded: the app sends a heartbeat every HEARTBEAT_S while idle, so each line arrives within
that time, and every loop stops after a fixed number of lines."""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import httpx
import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_key
from tests.conftest import wait_for
from tests.helpers.results import commit
from vstream.analysis.records import EventChange
from vstream.config import Settings
from vstream.names import Keys
from vstream.store import ResultStore

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster, pytest.mark.timeout(60)]

HEARTBEAT_S = 0.2
MAX_LINES = 400  # ~40 s of heartbeats at most: a missing message fails instead of hanging


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)

    @property
    def change(self) -> dict[str, object]:
        change: dict[str, object] = json.loads("\n".join(self.data))
        return change


@dataclass
class Reader:
    lines: Iterator[str]
    pings: int = 0

    def messages(self, n: int, *, max_lines: int = MAX_LINES) -> list[Message]:
        """The next ``n`` messages with data (comments counted as pings)."""
        out: list[Message] = []
        current = Message()
        for _ in range(max_lines):
            line = next(self.lines)
            if line == "":
                if current.data:
                    out.append(current)
                    if len(out) == n:
                        return out
                current = Message()
            elif line.startswith(":"):
                self.pings += line == ": ping"
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    current.data.append(value)
                elif name in ("id", "event"):
                    setattr(current, name, value)
        raise AssertionError(f"{len(out)} of {n} messages in {max_lines} lines")

    def quiet_for(self, pings: int) -> None:
        """Read until ``pings`` more heartbeats arrive, failing on any message in between."""
        target = self.pings + pings
        for _ in range(MAX_LINES):
            line = next(self.lines)
            assert not line.startswith(("data", "id", "event")), f"unexpected message line {line!r}"
            self.pings += line == ": ping"
            if self.pings >= target:
                return
        raise AssertionError("no heartbeat")


@pytest.fixture
def feed_client(api_settings: Settings) -> Iterator[TestClient]:
    api = api_settings.api.model_copy(update={"sse_heartbeat_s": HEARTBEAT_S})
    app = create_app(api_settings.model_copy(update={"api": api}), kafka=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> ResultStore:
    return ResultStore(redis_client, Keys(settings.redis.key_prefix))


def expected(changes: list[EventChange]) -> list[tuple[str, str, int]]:
    return [(c.kind, c.event.event_id, c.event.version) for c in changes]


def got(messages: list[Message]) -> list[tuple[str, str, int]]:
    out = []
    for m in messages:
        change = m.change
        event = change["event"]
        assert isinstance(event, dict) and m.event == change["kind"] and m.id
        out.append((str(change["kind"]), event["event_id"], event["version"]))
    return out


def open_clip(store: ResultStore, stream_id: str, index: int) -> list[EventChange]:
    """A clip that opens one event and closes the previous clip's (if any)."""
    return commit(store, stream_id, index, [(f"label{index}", 1.0, 2.0, 0.8)])


def test_live_changes_arrive_after_connecting(
    feed_client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    open_clip(store, "cam-a", 0)  # before connecting: not sent (the feed starts from now)
    with feed_client.stream("GET", "/v1/streams/cam-a/feed", headers=admin) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        reader = Reader(r.iter_lines())
        changes = open_clip(store, "cam-a", 1) + open_clip(store, "cam-a", 2) + open_clip(store, "cam-a", 3)
        assert len(changes) == 6  # opens of 1, 2, 3; closes of 0, 1, 2
        assert got(reader.messages(len(changes))) == expected(changes)
        reader.quiet_for(2)


def test_reconnecting_with_last_event_id_gets_exactly_the_missed_changes(
    feed_client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    url = "/v1/streams/cam-a/feed"
    with feed_client.stream("GET", url, headers=admin) as r:
        reader = Reader(r.iter_lines())
        first = open_clip(store, "cam-a", 0)
        (seen,) = reader.messages(1)
        assert got([seen]) == expected(first)
    missed = open_clip(store, "cam-a", 1) + open_clip(store, "cam-a", 2)  # while disconnected
    with feed_client.stream("GET", url, headers={**admin, "Last-Event-ID": str(seen.id)}) as r:
        reader = Reader(r.iter_lines())
        resumed = reader.messages(len(missed))
        assert got(resumed) == expected(missed)
        reader.quiet_for(2)  # nothing repeated after them
        live = open_clip(store, "cam-a", 3)
        assert got(reader.messages(len(live))) == expected(live)
    with feed_client.stream("GET", url, headers=admin, params={"last_event_id": resumed[0].id}) as r:
        assert got(Reader(r.iter_lines()).messages(3)) == expected((missed + live)[1:4])


def test_resuming_from_before_the_trim_is_told_what_was_lost(
    feed_client: TestClient, admin: dict[str, str], store: ResultStore, redis_client: redis.Redis
) -> None:
    changes = [c for i in range(3) for c in open_clip(store, "cam-t", i)]
    key = store.keys.feed("cam-t")
    entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", redis_client.xrange(key))
    ids = [entry_id.decode() for entry_id, _ in entries]
    redis_client.xtrim(key, maxlen=2, approximate=False)  # as the writer's MAXLEN trim does, exactly
    url = "/v1/streams/cam-t/feed"
    with feed_client.stream("GET", url, headers={**admin, "Last-Event-ID": ids[0]}) as r:
        gap, *kept = Reader(r.iter_lines()).messages(3)
    assert gap.event == "gap" and gap.id is None
    assert json.loads(gap.data[0]) == {"after": ids[0], "oldest": ids[-2], "trimmed": len(ids) - 2}
    assert got(kept) == expected(changes[-2:])
    with feed_client.stream("GET", url, headers={**admin, "Last-Event-ID": ids[-2]}) as r:
        (first,) = Reader(r.iter_lines()).messages(1)
    assert first.event != "gap" and first.id == ids[-1], "resuming inside what is kept: no gap"


def test_since_zero_replays_the_feed(
    feed_client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    changes = open_clip(store, "cam-a", 0) + open_clip(store, "cam-a", 1)
    with feed_client.stream("GET", "/v1/streams/cam-a/feed", headers=admin, params={"since": "0"}) as r:
        assert got(Reader(r.iter_lines()).messages(len(changes))) == expected(changes)


def test_heartbeat_when_idle(feed_client: TestClient, admin: dict[str, str]) -> None:
    with feed_client.stream("GET", "/v1/streams/cam-idle/feed", headers=admin) as r:
        lines = r.iter_lines()
        head = [next(lines) for _ in range(3)]
        assert head[0].startswith("retry: ") and head[1] == ": connected"
        Reader(lines).quiet_for(3)


def test_feed_needs_a_key_allowed_the_stream(feed_client: TestClient, admin: dict[str, str]) -> None:
    assert feed_client.get("/v1/streams/cam-a/feed").status_code == 401
    other = make_key(feed_client, admin, "lobby")
    r = feed_client.get("/v1/streams/cam-a/feed", headers=other)
    assert r.status_code == 403 and r.json()["title"] == "Stream not allowed"
    r = feed_client.get("/v1/feed", headers=other, params={"streams": "lobby,cam-a"})
    assert r.status_code == 403 and "cam-a" in r.json()["detail"]


@pytest.mark.parametrize("bad", ["$", "abc", "1-2-3", "-1"])
def test_bad_resume_ids_are_422(feed_client: TestClient, admin: dict[str, str], bad: str) -> None:
    r = feed_client.get("/v1/streams/cam-a/feed", headers={**admin, "Last-Event-ID": bad})
    assert r.status_code == 422 and "Last-Event-ID" in r.json()["detail"]
    assert feed_client.get("/v1/feed", headers=admin, params={"since": bad}).status_code == 422


def test_all_streams_feed_delivers_only_what_the_key_may_see(
    feed_client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    key = make_key(feed_client, admin, "cam-*")
    with feed_client.stream("GET", "/v1/feed", headers=key) as r:
        reader = Reader(r.iter_lines())
        hidden = open_clip(store, "lobby", 0)
        mine = open_clip(store, "cam-a", 0) + open_clip(store, "cam-b", 0)
        hidden += open_clip(store, "lobby", 1)
        mine += open_clip(store, "cam-a", 1)
        assert hidden and got(reader.messages(len(mine))) == expected(mine)
        reader.quiet_for(2)
    with feed_client.stream("GET", "/v1/feed", headers=admin, params={"streams": "cam-b", "since": "0"}) as r:
        reader = Reader(r.iter_lines())
        assert got(reader.messages(1)) == expected(mine[1:2])
        reader.quiet_for(2)
    with feed_client.stream("GET", "/v1/feed", headers=admin, params={"since": "0"}) as r:
        every = Reader(r.iter_lines()).messages(len(mine) + len(hidden))
        assert sorted(got(every)) == sorted(expected(mine + hidden))


def feed_closed(caplog: pytest.LogCaptureFixture, stream_id: str) -> bool:
    """Only this stream's feed counts: other loggers (Kafka's) say "closed" too, and an earlier test's
    feed can end, and log, while this test runs."""
    return any(
        r.name == "api.routes.feed" and f"{{{stream_id}}}:feed closed" in r.getMessage()
        for r in caplog.records
    )


def test_a_disconnected_client_ends_its_feed_on_a_real_server(
    api_settings: Settings, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Behind uvicorn (not the test client), closing the connection stops the server's read loop."""
    caplog.set_level(logging.DEBUG, logger="api.routes.feed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(api_settings, kafka=False), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "uvicorn")
        stream = f"cam-gone-{uuid.uuid4().hex[:6]}"  # this run's own: another run's feed may log its end late
        url = f"http://127.0.0.1:{port}/v1/streams/{stream}/feed"
        with httpx.stream("GET", url, headers=admin) as r:
            assert r.status_code == 200 and next(r.iter_lines()).startswith("retry:")
            assert not feed_closed(caplog, stream), "open while connected"
        wait_for(lambda: feed_closed(caplog, stream), 10, "the feed loop to end")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
