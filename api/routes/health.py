"""Liveness, readiness (Kafka and Redis reachable; the model server as infer workers last saw it) and
Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.deps import Res
from api.problems import problem_response
from vstream.metrics import InferHeartbeat, infer_heartbeats

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}

    model_config = {
        "json_schema_extra": {"examples": [{"status": "ok", "checks": {"redis": "ok", "kafka": "ok"}}]}
    }


@router.get("/health/live", response_model=Health)
async def live() -> Health:
    return Health(status="ok")


@router.get("/health/ready", response_model=Health, responses={503: {"description": "A dependency is down"}})
async def ready(res: Res) -> Response | Health:
    checks: dict[str, str] = {}
    try:
        await res.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["redis"] = f"down: {type(exc).__name__}"
    if res.producer is not None:
        checks["kafka"] = await _kafka(res)
    if checks["redis"] == "ok":
        model = _model(await _infer_beats(res))
        if model is not None:
            checks["model"] = model
    if all(v == "ok" or k == "model" for k, v in checks.items()):
        # A model outage degrades analysis, not the API: queries are still answered from Redis, so
        # the API stays in its load balancer and says "degraded" instead of failing readiness.
        return Health(status="ok" if checks.get("model", "ok") == "ok" else "degraded", checks=checks)
    return problem_response(503, "Not ready", "; ".join(f"{k} {v}" for k, v in checks.items()), checks=checks)


async def _infer_beats(res: Res) -> list[InferHeartbeat]:
    try:
        keys = [k async for k in res.redis.scan_iter(match=res.keys.worker_heartbeat("infer", "*"))]
        return infer_heartbeats([await res.redis.get(k) for k in keys])
    except Exception as exc:  # readiness must answer even if this part fails
        logger.warning("infer worker heartbeats unreadable: %s", exc)
        return []


def _model(beats: list[InferHeartbeat]) -> str | None:
    """'ok', 'outage: ...' when any live infer worker cannot reach the model server, None without workers."""
    if not beats:
        return None
    down = [b for b in beats if b.outage_since is not None]
    if not down:
        return "ok"
    since = min(b.outage_since for b in down if b.outage_since is not None)
    return (
        f"outage: {len(down)} of {len(beats)} infer workers cannot reach the model server for "
        f"{max(0.0, time.time() - since):.0f} s ({down[0].outage_error[:200]})"
    )


async def _kafka(res: Res) -> str:
    producer = res.producer
    assert producer is not None
    if producer.bootstrap_connected():
        return "ok"
    try:  # the producer connects lazily: a metadata fetch proves the broker answers
        await asyncio.wait_for(asyncio.to_thread(producer.partitions_for, res.topics.ingest_requests), 3.0)
        return "ok"
    except Exception as exc:  # timeout or broker error: not ready either way
        return f"down: {type(exc).__name__}"


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(res: Res) -> Response:
    """The whole deployment's counters (workers write them to Redis) and Kafka consumer lag."""
    registry = res.metrics_registry
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/ping", include_in_schema=False)
async def ping() -> Response:
    """The cheapest route of this app: the baseline of bench/api.py."""
    return Response(b'{"pong":true}', media_type="application/json")
