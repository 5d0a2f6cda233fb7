"""``vstream worker webhooks``: delivers live-feed event changes to the registered webhooks.

One dispatcher per key prefix does the sending (a lease in Redis elects it; further workers stand by and
take over within ``LEASE_S`` when it dies). SIGTERM/SIGINT: no new attempts start, those in flight finish,
the feed cursor is already saved (it only ever advances after the deliveries are recorded), the lease is
released so a standby takes over at once. One log line per delivery attempt (``vstream.webhooks``).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import redis.asyncio as aioredis

from vstream.config import Settings, load_settings
from vstream.names import Keys
from vstream.redis_conn import connect_async
from vstream.webhook_urls import check_webhook_url
from vstream.webhooks import Dispatcher
from workers.base import Heartbeat, HeartbeatWriter, new_worker_id, stop_on_signals

logger = logging.getLogger(__name__)

LEASE_S = 30
HEARTBEAT_S = 5.0
HEARTBEAT_TTL_S = 60
EXIT_LEASE_LOST = 2

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WebhookHeartbeat(Heartbeat):
    leader: bool  # holds the lease: the one sending
    stopping: bool
    attempts: int
    delivered: int
    failed: int
    retries: int
    cursor: str


class WebhookWorker:
    def __init__(
        self, settings: Settings, *, worker_id: str | None = None, dispatcher: Dispatcher | None = None
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.keys = Keys(settings.redis.key_prefix)
        self.lease_key = self.keys.webhook_dispatcher
        self.dispatcher = dispatcher or Dispatcher(
            settings, url_guard=lambda url: check_webhook_url(url, settings.api)
        )
        self.beats = HeartbeatWriter(self.keys, "webhooks", self.worker_id, ttl_s=HEARTBEAT_TTL_S)
        self.lease_lost = False
        self.leader = False

    def stop(self) -> None:
        self.dispatcher.stop()

    def run(self) -> int:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per attempt is ours; no URLs twice
        stop_on_signals(self.stop)
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
                await r.eval(_RELEASE, 1, self.lease_key, self.worker_id)
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
            if await r.set(self.lease_key, self.worker_id, nx=True, ex=LEASE_S):
                self.leader = True
                logger.info("webhook worker %s is the dispatcher", self.worker_id)
                return True
            if not announced:
                holder = await r.get(self.lease_key)
                holder_id = holder.decode() if isinstance(holder, bytes) else holder
                logger.info("webhook worker %s standing by (dispatcher: %s)", self.worker_id, holder_id)
                announced = True
            await self._heartbeat(r)
            await asyncio.sleep(1.0)
        return False

    async def _heartbeats(self, r: aioredis.Redis) -> None:
        while True:
            try:
                if not await r.eval(_RENEW, 1, self.lease_key, self.worker_id, LEASE_S):
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
        beat = WebhookHeartbeat(
            worker_id=self.worker_id,
            leader=self.leader,
            stopping=self.dispatcher.stopping.is_set(),
            attempts=s.attempts,
            delivered=s.delivered,
            failed=s.failed,
            retries=s.retries,
            cursor=s.cursor,
        )
        await self.beats.awrite(r, beat)


def main() -> int:
    """``python -m workers.webhook_worker`` (the same as ``vstream worker webhooks``)."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return WebhookWorker(settings).run()


if __name__ == "__main__":
    sys.exit(main())
