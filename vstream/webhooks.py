"""Webhooks: signed HTTP deliveries of live-feed event changes (open/update/close) to subscribers.

Signature scheme (what a receiver checks, see :func:`verify_signature`)::

    X-Vstream-Timestamp: <unix seconds>
    X-Vstream-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>
    X-Vstream-Delivery:  <delivery id>   (stable across retries: receivers dedupe on it)
    X-Vstream-Event:     open | update | close

The body is the EventChange JSON exactly as the feed stores it.

Durability: the :class:`Dispatcher` reads ``Keys.feed_all`` from a cursor kept in Redis. For every
matching (webhook, entry) it records a delivery with a deterministic id (``SET NX``, so re-reading an entry
after a crash records nothing new) *before* the cursor advances. Pending deliveries wait in a per-webhook
sorted set by due time and a global sorted set holds each webhook's earliest due time: a slow or dead
receiver only occupies its own ``per_webhook`` slots, never the head of a shared queue. At-least-once:
a crash during an attempt sends that delivery again after the restart (same X-Vstream-Delivery).

Redis Cluster: a webhook's record, queue and delivery list share the hash tag ``{webhook id}``, so the
Lua scripts touch one slot; the global due set is updated right after each script, from the queue head the
script returns, under a per-webhook lock (the one dispatcher is the only writer besides the delete route).
If a crash falls between the two, the due time is either early (the dispatcher finds nothing due and
recomputes it from the queue) or the feed entry is recorded again after the restart, which sets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from vstream.config import Settings
from vstream.names import Keys
from vstream.redis_conn import connect_async
from vstream.retry import backoff_s, parse_retry_after

logger = logging.getLogger(__name__)

Kind = Literal["open", "update", "close"]
KINDS: tuple[Kind, ...] = ("open", "update", "close")
Status = Literal["pending", "retrying", "delivered", "failed"]
TERMINAL: frozenset[str] = frozenset({"delivered", "failed"})
DELIVERY_LIST_CAP = 100
DEFAULT_RETENTION_S = 7 * 86400


# --- records ---
class WebhookConfig(BaseModel):
    """A subscription, stored in ``Keys.webhooks(stream_id)`` under its id. The secret is kept in clear:
    the sender needs it for the HMAC."""

    webhook_id: str
    stream_id: str
    url: str
    kinds: list[Kind]
    secret: str
    created_at: float


class DeliveryRecord(BaseModel):
    delivery_id: str
    webhook_id: str
    stream_id: str
    entry_id: str
    event_id: str
    kind: Kind
    attempts: int = 0
    status: Status = "pending"
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    created_at: float = Field(default_factory=time.time)
    body: str | None = None


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(8)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def delivery_id_for(webhook_id: str, entry_id: str) -> str:
    """Deterministic (the same feed entry for the same webhook is always the same delivery) and sorting
    in feed order, so deliveries due at the same moment go out in the order the changes happened."""
    ms, _, seq = entry_id.partition("-")
    digest = hashlib.sha256(f"{webhook_id}|{entry_id}".encode()).hexdigest()[:10]
    return f"dl_{int(ms):013d}-{int(seq or 0):06d}-{digest}"


# --- signing ---
def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, delivery_id: str, kind: str, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "vstream-webhooks",
        "X-Vstream-Timestamp": str(timestamp),
        "X-Vstream-Signature": sign(secret, timestamp, body),
        "X-Vstream-Delivery": delivery_id,
        "X-Vstream-Event": kind,
    }


def verify_signature(
    secret: str, timestamp: str | int, body: bytes, header: str, tolerance_s: float = 300
) -> bool:
    """For receivers: True when ``header`` signs ``timestamp`` + ``body`` with ``secret`` and the timestamp
    is within ``tolerance_s`` of now (replays of old deliveries are refused). Constant-time compare."""
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode(), header.strip().encode())


# --- retry policy ---
Outcome = Literal["delivered", "retry", "failed"]


def classify(code: int) -> Outcome:
    """2xx: delivered; 429 and 5xx: try again later; anything else (3xx, 4xx) is final."""
    return "delivered" if 200 <= code < 300 else "retry" if code == 429 or code >= 500 else "failed"


# --- Lua: atomic record + queue updates (idempotent), all keys of one webhook (one hash slot) ---
# Both return {changed, due time of the queue's head or false}; the caller copies the latter to the due set.
_ENQUEUE = """
local changed = 0
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  redis.call('LPUSH', KEYS[3], ARGV[4])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
  changed = 1
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {changed, head[2] or false}
"""
_SETTLE = """
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[4])
else redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {1, head[2] or false}
"""


@dataclass
class Attempt:  # one HTTP attempt
    record: DeliveryRecord
    status_code: int | None
    duration_s: float
    outcome: Outcome
    error: str | None = None
    retry_after_s: float | None = None


@dataclass
class DispatchStats:
    recorded: int = 0
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    retries: int = 0
    cursor: str = ""


class Dispatcher:
    """Feed -> durable deliveries -> signed HTTP POSTs. ``run()`` until ``stop()``; then in-flight
    attempts finish and the cursor is already saved. Run one per key prefix: two would send everything
    twice (``WebhookWorker`` holds a lease for that)."""

    batch, block_ms = 200, 1000  # feed entries per read; longest XREAD block (also the stop latency)

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int = 32,
        per_webhook: int = 1,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        url_guard: Callable[[str], object] | None = None,
    ) -> None:
        self.settings = settings
        self.keys = Keys(settings.redis.key_prefix)
        self.concurrency, self.per_webhook = concurrency, per_webhook
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.url_guard = url_guard
        self.ttl = settings.retention_s or DEFAULT_RETENTION_S
        self.stats = DispatchStats()
        self.stopping = threading.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._busy: Counter[str] = Counter()
        self._wake: asyncio.Event | None = None
        self._locks: dict[str, asyncio.Lock] = {}  # per webhook: a script and its due-set update
        self.redis: aioredis.Redis = connect_async(settings.redis)

    def stop(self) -> None:
        """Thread- and signal-safe: finish what is in flight, then return from ``run``."""
        self.stopping.set()

    async def run(self) -> None:
        self._wake = asyncio.Event()
        r, timeout = self.redis, self.settings.api.webhook_timeout_s
        self._enqueue, self._settle = r.register_script(_ENQUEUE), r.register_script(_SETTLE)
        try:
            limits = httpx.Limits(max_connections=self.concurrency)
            async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as http:
                self._http = http
                feeder = asyncio.create_task(self._feed_loop())
                try:
                    await self._deliver_loop()
                finally:
                    self.stopping.set()
                    await feeder
                    await self._drain()
        finally:
            await r.aclose()

    # --- feed -> deliveries ---
    async def _feed_loop(self) -> None:
        cursor: str | None = None
        while not self.stopping.is_set():
            try:
                if cursor is None:
                    cursor = self.stats.cursor = _text(
                        await self.redis.get(self.keys.webhook_cursor) or "0-0"
                    )
                reply: Any = await self.redis.xread(
                    {self.keys.feed_all: cursor}, count=self.batch, block=self.block_ms
                )
                if not reply:
                    continue
                entries = reply[0][1]
                await self._record(entries)
                cursor = _text(entries[-1][0])
                await self.redis.set(self.keys.webhook_cursor, cursor)  # only after recording
                self.stats.cursor = cursor
                self._poke()
            except aioredis.RedisError as exc:
                logger.warning("webhook feed read failed (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _record(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        hooks: dict[str, list[WebhookConfig]] = {}
        recs: list[DeliveryRecord] = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            parsed = _parse_entry(entry_id, fields)
            if parsed is None:
                continue
            kind, stream_id, event_id, body = parsed
            if stream_id not in hooks:
                hooks[stream_id] = await self._webhooks(stream_id)
            entry_ms = int(entry_id.split("-", 1)[0])
            for hook in hooks[stream_id]:
                if kind in hook.kinds and entry_ms >= int(hook.created_at * 1000):
                    rec = DeliveryRecord(
                        delivery_id=delivery_id_for(hook.webhook_id, entry_id),
                        webhook_id=hook.webhook_id,
                        stream_id=stream_id,
                        entry_id=entry_id,
                        event_id=event_id,
                        kind=kind,
                        next_attempt_at=entry_ms / 1000,
                        body=body,
                    )
                    recs.append(rec)
        # one task per webhook keeps each queue in feed order; scripts cannot go in a cluster pipeline
        by_hook: dict[str, list[DeliveryRecord]] = {}
        for rec in recs:
            by_hook.setdefault(rec.webhook_id, []).append(rec)
        counts = await asyncio.gather(*(self._enqueue_all(group) for group in by_hook.values()))
        self.stats.recorded += sum(counts)

    async def _enqueue_all(self, recs: list[DeliveryRecord]) -> int:
        k, wid, recorded = self.keys, recs[0].webhook_id, 0
        async with self._lock(wid):
            head: object = None
            for rec in recs:
                did, due = rec.delivery_id, rec.next_attempt_at or time.time()
                keys = [k.webhook_delivery(wid, did), k.webhook_queue(wid), k.webhook_deliveries(wid)]
                args: list[str | float] = [rec.model_dump_json(), self.ttl, due, did, DELIVERY_LIST_CAP]
                changed, head = await self._enqueue(keys=keys, args=args)
                recorded += int(changed)
            await self._set_due(wid, head)
        return recorded

    def _lock(self, webhook_id: str) -> asyncio.Lock:
        return self._locks.setdefault(webhook_id, asyncio.Lock())

    async def _set_due(self, webhook_id: str, head: object) -> None:
        """Copy a queue's head due time (a script's answer) to the global due set; none: drop the webhook."""
        if head:
            await self.redis.zadd(self.keys.webhook_due, {webhook_id: float(_text(head))})
        else:
            await self.redis.zrem(self.keys.webhook_due, webhook_id)

    async def _webhooks(self, stream_id: str) -> list[WebhookConfig]:
        raw = await self.redis.hgetall(self.keys.webhooks(stream_id))
        out = []
        for value in raw.values():
            try:
                out.append(WebhookConfig.model_validate_json(value))
            except ValueError:
                logger.warning("ignoring an unreadable webhook config of stream %s", stream_id)
        return out

    # --- deliveries -> HTTP ---
    async def _deliver_loop(self) -> None:
        assert self._wake is not None
        while not self.stopping.is_set():
            try:
                await self._start_due()
            except aioredis.RedisError as exc:
                logger.warning("webhook queue read failed (%s); retrying", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.25)

    async def _start_due(self) -> None:
        now = time.time()
        due = await self.redis.zrangebyscore(self.keys.webhook_due, "-inf", now, start=0, num=1000)
        for raw in due:
            webhook_id = _text(raw)
            free = min(self.per_webhook - self._busy[webhook_id], self.concurrency - len(self._in_flight))
            if free <= 0:
                continue
            ids = await self.redis.zrangebyscore(
                self.keys.webhook_queue(webhook_id), "-inf", now, start=0, num=free + self._busy[webhook_id]
            )
            if not ids and not self._busy[webhook_id]:  # its queue was deleted: recompute its due time
                await self._save(webhook_id, "", None, None)
            for delivery_id in (_text(i) for i in ids):
                if delivery_id in self._in_flight or free <= 0:
                    continue
                free -= 1
                self._busy[webhook_id] += 1
                task = asyncio.create_task(self._attempt(webhook_id, delivery_id))
                self._in_flight[delivery_id] = task
            if len(self._in_flight) >= self.concurrency:
                return

    async def _drain(self) -> None:
        if self._in_flight:
            logger.info("webhook dispatcher draining %d in-flight deliveries", len(self._in_flight))
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _attempt(self, webhook_id: str, delivery_id: str) -> None:
        try:
            await self._attempt_once(webhook_id, delivery_id)
        except Exception:  # a bug or Redis outage must not kill the loop; the delivery stays queued
            logger.exception("webhook delivery %s of %s failed unexpectedly", delivery_id, webhook_id)
        finally:
            self._in_flight.pop(delivery_id, None)
            self._busy -= Counter([webhook_id])  # drops it at zero
            self._poke()

    async def _attempt_once(self, webhook_id: str, delivery_id: str) -> None:
        raw = await self.redis.get(self.keys.webhook_delivery(webhook_id, delivery_id))
        rec = DeliveryRecord.model_validate_json(raw) if raw else None
        if rec is None or rec.status in TERMINAL or rec.body is None:
            await self._save(webhook_id, delivery_id, None, None)  # expired or already settled
            return
        hook = await self._hook(rec.stream_id, webhook_id)
        if hook is None:
            rec.status, rec.last_error, rec.body = "failed", "webhook deleted", None
            rec.next_attempt_at = None
            await self._save(webhook_id, delivery_id, rec, None)
            logger.info(
                "webhook delivery=%s webhook=%s outcome=dropped (webhook deleted)", delivery_id, webhook_id
            )
            return
        attempt = await self._post(hook, rec)
        await self._apply(rec, attempt)

    async def _hook(self, stream_id: str, webhook_id: str) -> WebhookConfig | None:
        raw = await self.redis.hget(self.keys.webhooks(stream_id), webhook_id)
        return WebhookConfig.model_validate_json(raw) if raw else None

    async def _post(self, hook: WebhookConfig, rec: DeliveryRecord) -> Attempt:
        assert rec.body is not None
        body, started = rec.body.encode(), time.monotonic()
        rec.attempts += 1
        headers = signed_headers(hook.secret, body, rec.delivery_id, rec.kind, int(time.time()))
        timeout = self.settings.api.webhook_timeout_s
        try:
            if self.url_guard is not None:  # the host is resolved again: its addresses may have changed
                await asyncio.to_thread(self.url_guard, hook.url)
        except Exception as exc:  # the guard's refusal (a Problem) or a resolver error
            return Attempt(rec, None, time.monotonic() - started, "failed", f"url refused: {exc}")
        try:
            async with asyncio.timeout(timeout):  # total, whatever the receiver trickles
                async with self._http.stream("POST", hook.url, content=body, headers=headers) as resp:
                    code, retry_after = resp.status_code, parse_retry_after(resp.headers.get("retry-after"))
        except (httpx.TimeoutException, TimeoutError):
            return Attempt(rec, None, time.monotonic() - started, "retry", f"timeout after {timeout:g} s")
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            return Attempt(rec, None, time.monotonic() - started, "retry", error)
        outcome = classify(code)
        status_error = None if outcome == "delivered" else f"HTTP {code}"
        return Attempt(rec, code, time.monotonic() - started, outcome, status_error, retry_after)

    async def _apply(self, rec: DeliveryRecord, attempt: Attempt) -> None:
        now = time.time()
        rec.last_status_code, rec.last_error = attempt.status_code, attempt.error
        outcome = attempt.outcome
        if outcome == "retry" and rec.attempts >= self.settings.api.webhook_max_attempts:
            outcome = "failed"
            rec.last_error = f"{attempt.error}; gave up after {rec.attempts} attempts"
        score: float | None = None
        if outcome == "retry":
            delay = backoff_s(rec.attempts, self.backoff_base_s, self.backoff_cap_s)
            wanted = min(attempt.retry_after_s or 0.0, self.backoff_cap_s)  # the receiver's Retry-After
            score = now + max(delay, wanted)
            rec.status, rec.next_attempt_at = "retrying", score
            self.stats.retries += 1
        else:
            rec.status, rec.next_attempt_at, rec.body = outcome, None, None
            rec.delivered_at = now if outcome == "delivered" else None
            self.stats.delivered += outcome == "delivered"
            self.stats.failed += outcome == "failed"
        await self._save(rec.webhook_id, rec.delivery_id, rec, score)
        self.stats.attempts += 1
        _log_attempt(rec, attempt, None if score is None else score - now)

    async def _save(
        self, webhook_id: str, delivery_id: str, rec: DeliveryRecord | None, score: float | None
    ) -> None:
        k = self.keys
        async with self._lock(webhook_id):
            _, head = await self._settle(
                keys=[k.webhook_delivery(webhook_id, delivery_id), k.webhook_queue(webhook_id)],
                args=[
                    rec.model_dump_json() if rec else "",
                    self.ttl,
                    "" if score is None else repr(score),
                    delivery_id,
                ],
            )
            await self._set_due(webhook_id, head)


def _log_attempt(rec: DeliveryRecord, attempt: Attempt, next_in_s: float | None) -> None:
    tail = f" next_in_s={next_in_s:.1f}" if next_in_s is not None else ""
    tail += f" error={rec.last_error!r}" if rec.last_error else ""
    code = attempt.status_code if attempt.status_code is not None else "-"
    logger.info(
        "webhook delivery=%s webhook=%s stream=%s event=%s kind=%s attempt=%d status=%s duration_ms=%.0f "
        "outcome=%s%s",
        *(rec.delivery_id, rec.webhook_id, rec.stream_id, rec.event_id, rec.kind, rec.attempts, code),
        *(attempt.duration_s * 1000, rec.status, tail),
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_entry(entry_id: str, fields: dict[bytes, bytes]) -> tuple[Kind, str, str, str] | None:
    """(kind, stream id, event id, body) of a feed entry; None (logged) when it is unreadable."""
    try:
        kind = fields[b"kind"].decode()
        body = fields[b"data"].decode()
        event = json.loads(body)["event"]
        stream_id, event_id = str(event["stream_id"]), str(event["event_id"])
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning("skipping unreadable feed entry %s: %s", entry_id, exc)
        return None
    if kind not in KINDS:
        logger.warning("skipping feed entry %s of unknown kind %r", entry_id, kind)
        return None
    return kind, stream_id, event_id, body
