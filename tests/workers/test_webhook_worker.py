"""Webhook delivery against a real HTTP receiver on 127.0.0.1 and the real Redis.

Event changes are written to the feed the way ``ResultStore`` writes them; webhooks are registered through
the API; the dispatcher runs in a thread (or the worker in a subprocess) and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from tests.conftest import settings_env, wait_for
from vstream.analysis.records import Event, EventChange
from vstream.config import ApiSettings, Settings
from vstream.names import Keys
from vstream.retry import backoff_s
from vstream.store import FEED_MAXLEN, ResultStore
from vstream.webhook_urls import check_webhook_url
from vstream.webhooks import Dispatcher, Kind, classify, delivery_id_for, sign, verify_signature

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster]
ADMIN = {"Authorization": "Bearer webhook-test-admin"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """An HTTP server that records every POST and answers from a per-path script (then 200)."""

    script: dict[str, list[int]] = field(default_factory=dict)
    delay_s: dict[str, float] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    queue = receiver.script.get(self.path, [])
                    status = queue.pop(0) if queue else 200
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(Received(self.path, headers, body, status))
                time.sleep(receiver.delay_s.get(self.path, 0.0))
                try:
                    self.send_response(status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender timed out and hung up

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def got(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    rx.start()
    yield rx
    rx.stop()


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    api = ApiSettings(
        admin_key=SecretStr("webhook-test-admin"),
        allow_private_networks=True,  # the receiver is on 127.0.0.1
        webhook_timeout_s=1.0,
        webhook_max_attempts=3,
    )
    return settings.model_copy(update={"api": api})


@pytest.fixture
def api(hook_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(hook_settings, kafka=False)) as c:
        yield c


def register(api: TestClient, stream: str, url: str, kinds: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url} if kinds is None else {"url": url, "kinds": kinds}
    r = api.post(f"/v1/streams/{stream}/webhooks", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


def deliveries(api: TestClient, stream: str, webhook_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/streams/{stream}/webhooks/{webhook_id}/deliveries?limit=100", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def publish(r: redis.Redis, keys: Keys, stream: str, kind: Kind, event_id: str) -> bytes:
    """One feed entry, written as ResultStore writes it: to the stream's feed, then relayed to the
    all-streams feed."""
    event = Event(
        event_id=event_id,
        stream_id=stream,
        label="person falls",
        state="closed" if kind == "close" else "open",
        start=12.0,
        end=15.5,
        confidence=0.9,
    )
    entry = {"kind": kind, "data": EventChange(kind=kind, event=event).model_dump_json()}
    r.xadd(keys.feed(stream), entry, maxlen=FEED_MAXLEN, approximate=True)  # type: ignore[arg-type]
    assert ResultStore(r, keys).relay_feed(stream) == 1
    return entry["data"].encode()


@contextmanager
def dispatching(s: Settings, **options: Any) -> Iterator[Dispatcher]:
    """A Dispatcher running in a thread; stopped (drained) and joined on exit."""
    d = Dispatcher(s, url_guard=lambda url: check_webhook_url(url, s.api), **options)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(d.run())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield d
    finally:
        d.stop()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the dispatcher did not stop within 20 s"
    assert not errors, errors


def verified(rx: Received, secret: str) -> bool:
    h = rx.headers
    return verify_signature(secret, h["x-vstream-timestamp"], rx.body, h["x-vstream-signature"])


def test_signing_and_retry_policy_units() -> None:
    body, ts = b'{"kind":"open"}', int(time.time())
    header = sign("s3cret", ts, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature("s3cret", ts, body, header)
    assert verify_signature("s3cret", str(ts), body, header)
    assert not verify_signature("s3cret", ts, body + b" ", header)  # tampered body
    assert not verify_signature("other", ts, body, header)  # wrong secret
    assert not verify_signature("s3cret", ts + 1, body, header)  # timestamp not the signed one
    old = ts - 400
    assert not verify_signature("s3cret", old, body, sign("s3cret", old, body))  # stale: replay refused
    assert verify_signature("s3cret", old, body, sign("s3cret", old, body), tolerance_s=600)
    assert not verify_signature("s3cret", "soon", body, header)
    assert [classify(c) for c in (200, 204, 301, 400, 404, 410, 429, 500, 503)] == [
        *("delivered", "delivered", "failed", "failed", "failed", "failed"),
        *("retry", "retry", "retry"),
    ]
    first, tenth = delivery_id_for("wh_1", "1700000000000-2"), delivery_id_for("wh_1", "1700000000000-10")
    assert first == delivery_id_for("wh_1", "1700000000000-2") and first < tenth  # stable, in feed order
    assert first != delivery_id_for("wh_2", "1700000000000-2")
    delays = [backoff_s(n) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1.0 and 4.0 <= delays[3] <= 8.0 and max(delays) <= 300.0


def test_signed_deliveries_retry_kinds_and_stream_isolation(
    hook_settings: Settings, api: TestClient, receiver: Receiver, redis_client: redis.Redis
) -> None:
    keys = Keys(hook_settings.redis.key_prefix)
    receiver.script["/all"] = [500]  # the first request fails, the retry succeeds
    every = register(api, "cam-1", receiver.url("/all"))
    closes = register(api, "cam-1", receiver.url("/closes"), kinds=["close"])
    other = register(api, "cam-2", receiver.url("/other"))
    bodies = {kind: publish(redis_client, keys, "cam-1", kind, "ev1") for kind in ("open", "update", "close")}
    with dispatching(hook_settings):
        wait_for(lambda: len(receiver.got("/all")) >= 4, 20, "3 deliveries and 1 retry to /all")
        wait_for(lambda: receiver.got("/closes"), 10, "the close delivery to /closes")
        time.sleep(1.0)  # anything extra (a duplicate, a wrong stream) would arrive now
        late = publish(redis_client, keys, "cam-2", "open", "ev2")
        wait_for(lambda: receiver.got("/other"), 10, "the cam-2 delivery")

    got = receiver.got("/all")
    assert len(got) == 4 and [r.status for r in got].count(500) == 1
    for rx in got:
        assert verified(rx, every["secret"]), rx.headers
        assert rx.headers["content-type"] == "application/json"
        assert rx.body == bodies[rx.headers["x-vstream-event"]]  # the EventChange JSON as stored
        assert json.loads(rx.body)["kind"] == rx.headers["x-vstream-event"]
        assert not verify_signature(every["secret"], rx.headers["x-vstream-timestamp"], rx.body + b" ",
                                    rx.headers["x-vstream-signature"])  # fmt: skip
        assert not verified(rx, closes["secret"])
    failed = next(r for r in got if r.status == 500)
    retried = [r for r in got if r.headers["x-vstream-delivery"] == failed.headers["x-vstream-delivery"]]
    assert [r.status for r in retried] == [500, 200]  # the same delivery id, sent twice

    records = {d["kind"]: d for d in deliveries(api, "cam-1", every["webhook_id"])}
    assert set(records) == {"open", "update", "close"}
    again = next(d for d in records.values() if d["delivery_id"] == failed.headers["x-vstream-delivery"])
    assert again["attempts"] == 2 and again["status"] == "delivered" and again["last_status_code"] == 200
    assert again["delivered_at"] and again["next_attempt_at"] is None and again["event_id"] == "ev1"
    assert sorted(d["attempts"] for d in records.values()) == [1, 1, 2]

    only_close = receiver.got("/closes")
    assert len(only_close) == 1 and only_close[0].headers["x-vstream-event"] == "close"
    assert verified(only_close[0], closes["secret"]) and only_close[0].body == bodies["close"]
    assert [d["kind"] for d in deliveries(api, "cam-1", closes["webhook_id"])] == ["close"]
    assert [r.body for r in receiver.got("/other")] == [late]  # nothing of cam-1
    assert verified(receiver.got("/other")[0], other["secret"])


def test_restart_does_not_resend(
    hook_settings: Settings, api: TestClient, receiver: Receiver, redis_client: redis.Redis
) -> None:
    keys = Keys(hook_settings.redis.key_prefix)
    register(api, "cam-1", receiver.url("/hook"))
    publish(redis_client, keys, "cam-1", "open", "ev1")
    publish(redis_client, keys, "cam-1", "close", "ev1")
    with dispatching(hook_settings):
        wait_for(lambda: len(receiver.got("/hook")) >= 2, 15, "2 deliveries")
    assert redis_client.get(keys.webhook_cursor) is not None

    with dispatching(hook_settings):  # a clean restart: resumes at the saved cursor
        publish(redis_client, keys, "cam-1", "open", "ev2")
        wait_for(lambda: len(receiver.got("/hook")) >= 3, 15, "the third delivery")
        time.sleep(1.0)
    redis_client.delete(keys.webhook_cursor)  # a crash after recording, before the cursor was saved
    newest: Any = redis_client.xrevrange(keys.feed_all, count=1)
    last = newest[0][0].decode()
    with dispatching(hook_settings) as d:
        wait_for(lambda: d.stats.cursor == last, 10, "the whole feed to be read again")
        time.sleep(1.5)
    assert d.stats.recorded == 0 and d.stats.attempts == 0
    ids = [r.headers["x-vstream-delivery"] for r in receiver.got("/hook")]
    assert len(ids) == 3 and len(set(ids)) == 3, ids


def test_slow_and_failing_receivers_do_not_block_others(
    hook_settings: Settings, api: TestClient, receiver: Receiver, redis_client: redis.Redis
) -> None:
    keys = Keys(hook_settings.redis.key_prefix)
    receiver.delay_s["/slow"] = 3.0  # longer than webhook_timeout_s (1 s): every attempt times out
    receiver.script["/gone"] = [410, 410, 410]
    receiver.script["/busy"] = [503] * 9  # 3 deliveries x 3 attempts
    slow = register(api, "cam-1", receiver.url("/slow"))
    gone = register(api, "cam-1", receiver.url("/gone"))
    busy = register(api, "cam-1", receiver.url("/busy"))
    register(api, "cam-1", receiver.url("/fast"))
    for n in range(3):
        publish(redis_client, keys, "cam-1", "open", f"ev{n}")
    started = time.monotonic()
    with dispatching(hook_settings):
        wait_for(lambda: len(receiver.got("/fast")) >= 3, 10, "3 deliveries to the fast receiver")
        fast_s = time.monotonic() - started
        wait_for(
            lambda: all(d["status"] == "failed" for d in deliveries(api, "cam-1", busy["webhook_id"])),
            30,
            "the 503 deliveries to give up",
        )
        wait_for(
            lambda: all(d["status"] == "failed" for d in deliveries(api, "cam-1", slow["webhook_id"])),
            40,
            "the timing-out deliveries to give up",
        )
    assert fast_s < 2.5, f"the fast receiver waited {fast_s:.1f} s behind the slow one"
    assert len(receiver.got("/fast")) == 3
    assert len(receiver.got("/gone")) == 3  # a 410 is final: one attempt per delivery
    for d in deliveries(api, "cam-1", gone["webhook_id"]):
        assert d["status"] == "failed" and d["attempts"] == 1 and d["last_status_code"] == 410
    for d in deliveries(api, "cam-1", busy["webhook_id"]):
        assert d["attempts"] == 3 and d["last_status_code"] == 503 and "gave up" in d["last_error"]
    for d in deliveries(api, "cam-1", slow["webhook_id"]):
        assert d["attempts"] == 3 and d["last_status_code"] is None and "timeout" in d["last_error"]


def test_deleted_webhook_gets_nothing_more(
    hook_settings: Settings, api: TestClient, receiver: Receiver, redis_client: redis.Redis
) -> None:
    keys = Keys(hook_settings.redis.key_prefix)
    receiver.script["/hook"] = [503]
    hook = register(api, "cam-1", receiver.url("/hook"))
    publish(redis_client, keys, "cam-1", "open", "ev1")
    with dispatching(hook_settings, backoff_base_s=2.0):
        wait_for(lambda: receiver.got("/hook"), 10, "the first attempt")
        r = api.delete(f"/v1/streams/cam-1/webhooks/{hook['webhook_id']}", headers=ADMIN)
        assert r.status_code == 204
        publish(redis_client, keys, "cam-1", "close", "ev1")
        time.sleep(3.0)  # past the retry's due time
    assert len(receiver.got("/hook")) == 1


def worker(s: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **settings_env(s),
        "VSTREAM_API__ALLOW_PRIVATE_NETWORKS": "true",
        "VSTREAM_API__WEBHOOK_TIMEOUT_S": str(s.api.webhook_timeout_s),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "workers.webhook_worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("the worker did not stop within 20 s of SIGTERM") from None


def test_worker_heartbeat_lease_drain_and_takeover(
    hook_settings: Settings, api: TestClient, receiver: Receiver, redis_client: redis.Redis, tmp_path: Path
) -> None:
    s = hook_settings.model_copy(
        update={"api": hook_settings.api.model_copy(update={"webhook_timeout_s": 8.0})}
    )
    keys = Keys(s.redis.key_prefix)
    receiver.delay_s["/hook"] = 2.0  # in flight when SIGTERM arrives
    hook = register(api, "cam-1", receiver.url("/hook"))
    first, second = worker(s, tmp_path / "w1.log"), None
    try:
        wait_for(lambda: redis_client.get(keys.webhook_dispatcher), 30, "the first worker to lead")
        second = worker(s, tmp_path / "w2.log")
        wait_for(lambda: "standing by" in (tmp_path / "w2.log").read_text(), 30, "the second to stand by")
        publish(redis_client, keys, "cam-1", "open", "ev1")
        wait_for(lambda: receiver.got("/hook"), 15, "the delivery to start")
        assert stop(first) == 0  # drains: the in-flight delivery completes before exit
        log1 = (tmp_path / "w1.log").read_text()
        assert "attempt=1 status=200" in log1 and "outcome=delivered" in log1, log1
        assert deliveries(api, "cam-1", hook["webhook_id"])[0]["status"] == "delivered"
        publish(redis_client, keys, "cam-1", "close", "ev1")
        wait_for(lambda: len(receiver.got("/hook")) >= 2, 30, "the standby to take over and deliver")
        beats = [json.loads(v) for k in redis_client.scan_iter(keys.worker_heartbeat("webhooks", "*"))
                 if (v := redis_client.get(k))]  # fmt: skip
        assert any(b["leader"] for b in beats), beats
        assert stop(second) == 0
        second = None
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert redis_client.get(keys.webhook_dispatcher) is None  # released on a clean stop
    events = [r.headers["x-vstream-event"] for r in receiver.got("/hook")]
    assert events == ["open", "close"], events
    assert "webhook worker" in (tmp_path / "w2.log").read_text()
