"""``create_app(settings)``: the FastAPI application, with resources opened in ``lifespan``."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api import problems
from api.body_limit import BodyLimit
from api.deps import Resources
from api.keys import KeyStore
from vstream import __version__
from vstream.config import Settings, load_settings
from vstream.jobs import JobStore
from vstream.kafka_io import ensure_topics, make_producer
from vstream.metrics import CachedLag, RedisCollector
from vstream.names import Keys, Topics
from vstream.redis_conn import connect, connect_async

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, kafka: bool = True) -> FastAPI:
    """``kafka=False`` serves queries only (no job submission), for read replicas and benchmarks."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys, topics = Keys(settings.redis.key_prefix), Topics(settings.kafka.topic_prefix)
        client = connect_async(settings.redis)
        await client.ping()  # fail at start-up, not on the first request
        sync_client = connect(settings.redis)
        producer = None
        if kafka:
            ensure_topics(settings.kafka, {topics.ingest_requests: 1})
            producer = make_producer(settings.kafka, client_id="vstream-api")
        app.state.resources = Resources(
            settings=settings,
            redis=client,
            redis_sync=sync_client,
            producer=producer,
            keys=keys,
            topics=topics,
            key_store=KeyStore(client, keys),
            jobs=JobStore(sync_client, keys, settings.job_lease_s),
            metrics_registry=_registry(settings, sync_client, keys, topics),
        )
        gc.freeze()  # start-up objects leave the GC's view: full collections paused requests for 40-67 ms
        try:
            yield
        finally:
            if producer is not None:
                producer.close(timeout=5)
            await client.aclose()
            sync_client.close()

    app = FastAPI(
        title="vstream",
        version=__version__,
        lifespan=lifespan,
        description="Streaming video analytics with GLM-4.5V: jobs, events, segments, captions, live feed.",
    )
    problems.install(app)
    app.add_middleware(BodyLimit, limit=settings.api.max_body_bytes)
    _include_routes(app)
    return app


def _registry(settings: Settings, client: redis.Redis, keys: Keys, topics: Topics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RedisCollector(client, keys, CachedLag(settings.kafka.bootstrap, topics.lag_groups())))
    return registry


def _include_routes(app: FastAPI) -> None:
    from api.routes import ask, feed, health, jobs, journeys, keys, media, results, ui, webhooks

    for module in (health, keys, jobs, results, feed, webhooks, journeys, ask, media, ui):
        app.include_router(module.router)
