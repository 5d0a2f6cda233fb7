"""``vstream worker webhooks``: delivers live-feed event changes to the registered webhooks.

One dispatcher per key prefix does the sending (a lease in Redis elects it; further workers stand by and
take over within ``LEASE_S`` when it dies). SIGTERM/SIGINT: no new attempts start, those in flight finish,
the feed cursor is already saved (it only ever advances after the deliveries are recorded), the lease is
released so a standby takes over at once. One log line per delivery attempt (``vstream.webhooks``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
import uuid

import redis.asyncio as aioredis

from api.security import validate_webhook_url
from vstream.config import Settings, load_settings
from vstream.names import Keys
from vstream.redis_conn import connect_async
from vstream.webhooks import Dispatcher

logger = logging.getLogger(__name__)

LEASE_S = 30
HEARTBEAT_S = 5.0
EXIT_LEASE_LOST = 2

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(keys: Keys) -> str:
    """String with a TTL: id of the webhook worker allowed to dispatch (to move into vstream.names.Keys)."""
    return f"{keys.prefix}webhook-dispatcher"


class WebhookWorker:
    def __init__(
        self, settings: Settings, *, worker_id: str | None = None, dispatcher: Dispatcher | None = None
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.keys = Keys(settings.redis.key_prefix)
        self.dispatcher = dispatcher or Dispatcher(
            settings, url_guard=lambda url: validate_webhook_url(url, settings.api)
        )
        self.lease_lost = False
        self.leader = False

    def stop(self) -> None:
        self.dispatcher.stop()

    def run(self) -> int:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per attempt is ours; no URLs twice
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        return asyncio.run(self.main())

    async def main(self) -> int:
        r = connect_async(self.settings.redis)
        try:
            await r.ping()  # fail loudly at start-up
            logger.info("webhook worker %s started", self.worker_id)
            if not await self._acquire(r):
                return 0  # stopped while standing by
            beat = asyncio.create_task(self._heartbeats(r))
            try:
                await self.dispatcher.run()
            finally:
                beat.cancel()
                await asyncio.gather(beat, return_exceptions=True)
                await r.eval(_RELEASE, 1, lease_key(self.keys), self.worker_id)
                self.leader = False
                await self._heartbeat(r)
        finally:
            await r.aclose()
        s = self.dispatcher.stats
        logger.info(
            "webhook worker %s stopped: %d attempts, %d delivered, %d failed, cursor %s",
            *(self.worker_id, s.attempts, s.delivered, s.failed, s.cursor or "-"),
        )
        return EXIT_LEASE_LOST if self.lease_lost else 0

    async def _acquire(self, r: aioredis.Redis) -> bool:
        """Become the dispatcher, or stand by (heartbeating) until the lease is free."""
        announced = False
        while not self.dispatcher.stopping.is_set():
            if await r.set(lease_key(self.keys), self.worker_id, nx=True, ex=LEASE_S):
                self.leader = True
                logger.info("webhook worker %s is the dispatcher", self.worker_id)
                return True
            if not announced:
                holder = await r.get(lease_key(self.keys))
                holder_id = holder.decode() if isinstance(holder, bytes) else holder
                logger.info("webhook worker %s standing by (dispatcher: %s)", self.worker_id, holder_id)
                announced = True
            await self._heartbeat(r)
            await asyncio.sleep(1.0)
        return False

    async def _heartbeats(self, r: aioredis.Redis) -> None:
        while True:
            try:
                if not await r.eval(_RENEW, 1, lease_key(self.keys), self.worker_id, LEASE_S):
                    logger.error("webhook worker %s lost its lease; stopping", self.worker_id)
                    self.lease_lost, self.leader = True, False
                    self.dispatcher.stop()
                    return
                await self._heartbeat(r)
            except aioredis.RedisError as exc:
                logger.warning("webhook worker heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def _heartbeat(self, r: aioredis.Redis) -> None:
        s = self.dispatcher.stats
        value = {
            "leader": self.leader,
            "stopping": self.dispatcher.stopping.is_set(),
            "attempts": s.attempts,
            "delivered": s.delivered,
            "failed": s.failed,
            "retries": s.retries,
            "cursor": s.cursor,
            "at": round(time.time(), 3),
        }
        await r.set(self.keys.worker_heartbeat("webhooks", self.worker_id), json.dumps(value), ex=60)


def main() -> int:
    """``python -m workers.webhook_worker`` (the same as ``vstream worker webhooks``)."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return WebhookWorker(settings).run()


if __name__ == "__main__":
    sys.exit(main())
