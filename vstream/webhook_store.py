"""The webhook dispatcher's Redis state: subscriptions, delivery records, per-webhook queues, the global
due set and the feed cursor.

Pending deliveries wait in a per-webhook sorted set by due time and a global sorted set holds each
webhook's earliest due time, so a slow or dead receiver only holds its own queue. A webhook's record,
queue and delivery list share the hash tag ``{webhook id}``, so each Lua script touches one slot; the
global due set spans webhooks and is updated right after each script, from the queue head the script
returns, under a per-webhook lock (the one dispatcher is the only writer besides the delete route). If a
crash falls between the two, the due time is either early (the dispatcher finds nothing due and
recomputes it from the queue) or the feed entry is recorded again after the restart, which sets it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from vstream.names import Keys
from vstream.webhook_records import DeliveryRecord, WebhookConfig

logger = logging.getLogger(__name__)

DELIVERY_LIST_CAP = 100
DEFAULT_RETENTION_S = 7 * 86400

# Atomic record + queue updates (idempotent), all keys of one webhook (one hash slot). Both return
# {changed, due time of the queue's head or false}; the caller copies the latter to the due set.
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

FeedEntry = tuple[bytes, dict[bytes, bytes]]


class DeliveryStore:
    """Every webhook read and write of the dispatcher. ``ttl_s``: how long a delivery record is kept."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_s: int = DEFAULT_RETENTION_S) -> None:
        self.redis, self.keys, self.ttl = redis, keys, ttl_s
        self._enqueue = redis.register_script(_ENQUEUE)
        self._settle = redis.register_script(_SETTLE)
        self._locks: dict[str, asyncio.Lock] = {}  # per webhook: a script and its due-set update

    # --- feed cursor ---
    async def cursor(self) -> str:
        return text(await self.redis.get(self.keys.webhook_cursor) or "0-0")

    async def save_cursor(self, cursor: str) -> None:
        await self.redis.set(self.keys.webhook_cursor, cursor)

    async def read_feed(self, cursor: str, count: int, block_ms: int) -> list[FeedEntry]:
        """Entries of the all-streams feed after ``cursor``; empty when none came within ``block_ms``."""
        reply: Any = await self.redis.xread({self.keys.feed_all: cursor}, count=count, block=block_ms)
        return list(reply[0][1]) if reply else []

    # --- subscriptions ---
    async def webhooks(self, stream_id: str) -> list[WebhookConfig]:
        raw = await self.redis.hgetall(self.keys.webhooks(stream_id))
        out = []
        for value in raw.values():
            try:
                out.append(WebhookConfig.model_validate_json(value))
            except ValueError:
                logger.warning("ignoring an unreadable webhook config of stream %s", stream_id)
        return out

    async def webhook(self, stream_id: str, webhook_id: str) -> WebhookConfig | None:
        raw = await self.redis.hget(self.keys.webhooks(stream_id), webhook_id)
        return WebhookConfig.model_validate_json(raw) if raw else None

    # --- deliveries ---
    async def delivery(self, webhook_id: str, delivery_id: str) -> DeliveryRecord | None:
        raw = await self.redis.get(self.keys.webhook_delivery(webhook_id, delivery_id))
        return DeliveryRecord.model_validate_json(raw) if raw else None

    async def enqueue_all(self, recs: list[DeliveryRecord]) -> int:
        """Record and queue deliveries of one webhook, in order; those already recorded are skipped.
        Returns how many were new."""
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

    async def save(
        self, webhook_id: str, delivery_id: str, rec: DeliveryRecord | None, score: float | None
    ) -> None:
        """Write ``rec`` (None: leave the record) and queue the delivery again at ``score`` (None: take it
        off the queue); then the webhook's due time follows its queue head."""
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

    # --- due times ---
    async def due_webhooks(self, now: float, limit: int = 1000) -> list[str]:
        raw = await self.redis.zrangebyscore(self.keys.webhook_due, "-inf", now, start=0, num=limit)
        return [text(w) for w in raw]

    async def due_deliveries(self, webhook_id: str, now: float, limit: int) -> list[str]:
        queue = self.keys.webhook_queue(webhook_id)
        return [text(d) for d in await self.redis.zrangebyscore(queue, "-inf", now, start=0, num=limit)]

    def _lock(self, webhook_id: str) -> asyncio.Lock:
        return self._locks.setdefault(webhook_id, asyncio.Lock())

    async def _set_due(self, webhook_id: str, head: object) -> None:
        """Copy a queue's head due time (a script's answer) to the global due set; none: drop the webhook."""
        if head:
            await self.redis.zadd(self.keys.webhook_due, {webhook_id: float(text(head))})
        else:
            await self.redis.zrem(self.keys.webhook_due, webhook_id)


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
