"""Webhooks: signed HTTP deliveries of live-feed event changes (open/update/close) to subscribers.

The concept in modules: :mod:`vstream.webhook_records` (the subscription and delivery records, their ids),
:mod:`vstream.webhook_signing` (the signature a receiver checks, see :func:`verify_signature`),
:mod:`vstream.webhook_store` (their Redis keys and Lua scripts), :mod:`vstream.webhook_urls` (the
callback URL check) and here the :class:`Dispatcher`. The names a receiver or the API needs are
re-exported here.

The body of a POST is the EventChange JSON exactly as the feed stores it.

Durability: the :class:`Dispatcher` reads ``Keys.feed_all`` from a cursor kept in Redis. For every
matching (webhook, entry) it records a delivery with a deterministic id (``SET NX``, so re-reading an entry
after a crash records nothing new) *before* the cursor advances. Each webhook has its own queue (see
:mod:`vstream.webhook_store`): a slow or dead receiver only occupies its own ``per_webhook`` slots, never
the head of a shared queue. At-least-once: a crash during an attempt sends that delivery again after the
restart (same X-Vstream-Delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
import redis.asyncio as aioredis

from vstream.config import Settings
from vstream.names import Keys
from vstream.redis_conn import connect_async
from vstream.retry import backoff_s, parse_retry_after
from vstream.webhook_records import (
    KINDS,
    TERMINAL,
    DeliveryRecord,
    Kind,
    Status,
    WebhookConfig,
    delivery_id_for,
    new_secret,
    new_webhook_id,
)
from vstream.webhook_signing import sign, signed_headers, verify_signature
from vstream.webhook_store import DEFAULT_RETENTION_S, DeliveryStore, FeedEntry
from vstream.webhook_urls import UnsafeUrl

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "DeliveryRecord",
    "Dispatcher",
    "Kind",
    "Status",
    "WebhookConfig",
    "classify",
    "delivery_id_for",
    "new_secret",
    "new_webhook_id",
    "sign",
    "signed_headers",
    "verify_signature",
]

# --- retry policy ---
Outcome = Literal["delivered", "retry", "failed"]


def classify(code: int) -> Outcome:
    """2xx: delivered; 429 and 5xx: try again later; anything else (3xx, 4xx) is final."""
    return "delivered" if 200 <= code < 300 else "retry" if code == 429 or code >= 500 else "failed"


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
    twice (``WebhookWorker`` holds a lease for that). ``url_guard`` (e.g.
    ``vstream.webhook_urls.check_webhook_url``) is called before each attempt; its :class:`UnsafeUrl`
    fails the delivery."""

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
        self.stats = DispatchStats()
        self.stopping = threading.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._busy: Counter[str] = Counter()
        self._wake: asyncio.Event | None = None
        self.redis: aioredis.Redis = connect_async(settings.redis)
        self.store = DeliveryStore(self.redis, self.keys, settings.retention_s or DEFAULT_RETENTION_S)

    def stop(self) -> None:
        """Thread- and signal-safe: finish what is in flight, then return from ``run``."""
        self.stopping.set()

    async def run(self) -> None:
        self._wake = asyncio.Event()
        timeout = self.settings.api.webhook_timeout_s
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
            await self.redis.aclose()

    # --- feed -> deliveries ---
    async def _feed_loop(self) -> None:
        cursor: str | None = None
        while not self.stopping.is_set():
            try:
                if cursor is None:
                    cursor = self.stats.cursor = await self.store.cursor()
                entries = await self.store.read_feed(cursor, self.batch, self.block_ms)
                if not entries:
                    continue
                await self._record(entries)
                cursor = entries[-1][0].decode()
                await self.store.save_cursor(cursor)  # only after recording
                self.stats.cursor = cursor
                self._poke()
            except aioredis.RedisError as exc:
                logger.warning("webhook feed read failed (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _record(self, entries: list[FeedEntry]) -> None:
        hooks: dict[str, list[WebhookConfig]] = {}
        by_hook: dict[str, list[DeliveryRecord]] = {}
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            parsed = _parse_entry(entry_id, fields)
            if parsed is None:
                continue
            stream_id = parsed[1]
            if stream_id not in hooks:
                hooks[stream_id] = await self.store.webhooks(stream_id)
            for rec in _deliveries(entry_id, parsed, hooks[stream_id]):
                by_hook.setdefault(rec.webhook_id, []).append(rec)
        # one task per webhook keeps each queue in feed order; scripts cannot go in a cluster pipeline
        counts = await asyncio.gather(*(self.store.enqueue_all(group) for group in by_hook.values()))
        self.stats.recorded += sum(counts)

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
        for webhook_id in await self.store.due_webhooks(now):
            free = min(self.per_webhook - self._busy[webhook_id], self.concurrency - len(self._in_flight))
            if free <= 0:
                continue
            ids = await self.store.due_deliveries(webhook_id, now, free + self._busy[webhook_id])
            if not ids and not self._busy[webhook_id]:  # its queue was deleted: recompute its due time
                await self.store.save(webhook_id, "", None, None)
            for delivery_id in ids:
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
        rec = await self.store.delivery(webhook_id, delivery_id)
        if rec is None or rec.status in TERMINAL or rec.body is None:
            await self.store.save(webhook_id, delivery_id, None, None)  # expired or already settled
            return
        hook = await self.store.webhook(rec.stream_id, webhook_id)
        if hook is None:
            rec.status, rec.last_error, rec.body = "failed", "webhook deleted", None
            rec.next_attempt_at = None
            await self.store.save(webhook_id, delivery_id, rec, None)
            logger.info(
                "webhook delivery=%s webhook=%s outcome=dropped (webhook deleted)", delivery_id, webhook_id
            )
            return
        attempt = await self._post(hook, rec)
        await self._apply(rec, attempt)

    async def _post(self, hook: WebhookConfig, rec: DeliveryRecord) -> Attempt:
        assert rec.body is not None
        body, started = rec.body.encode(), time.monotonic()
        rec.attempts += 1
        headers = signed_headers(hook.secret, body, rec.delivery_id, rec.kind, int(time.time()))
        timeout = self.settings.api.webhook_timeout_s
        try:
            if self.url_guard is not None:  # the host is resolved again: its addresses may have changed
                await asyncio.to_thread(self.url_guard, hook.url)
        except UnsafeUrl as exc:
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
        await self.store.save(rec.webhook_id, rec.delivery_id, rec, score)
        self.stats.attempts += 1
        _log_attempt(rec, attempt, None if score is None else score - now)


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


ParsedEntry = tuple[Kind, str, str, str]  # kind, stream id, event id, body


def _parse_entry(entry_id: str, fields: dict[bytes, bytes]) -> ParsedEntry | None:
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


def _deliveries(entry_id: str, parsed: ParsedEntry, hooks: list[WebhookConfig]) -> list[DeliveryRecord]:
    """The deliveries one feed entry makes: to each webhook of its stream that wants its kind and existed
    when the change happened."""
    kind, stream_id, event_id, body = parsed
    entry_ms = int(entry_id.split("-", 1)[0])
    return [
        DeliveryRecord(
            delivery_id=delivery_id_for(hook.webhook_id, entry_id),
            webhook_id=hook.webhook_id,
            stream_id=stream_id,
            entry_id=entry_id,
            event_id=event_id,
            kind=kind,
            next_attempt_at=entry_ms / 1000,
            body=body,
        )
        for hook in hooks
        if kind in hook.kinds and entry_ms >= int(hook.created_at * 1000)
    ]
