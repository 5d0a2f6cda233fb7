"""Webhooks of a stream: register a URL for signed event-change POSTs, list, delete, inspect deliveries.

Delivery itself is the webhook worker's job (``workers/webhook_worker.py``); these routes only manage the
subscriptions in Redis and read back the delivery records the worker keeps.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from api.deps import Caller, Res, require_stream
from api.problems import Problem
from api.schemas.keys import AUTH_ERRORS, JSON_BODY_ERRORS, problem_doc
from api.schemas.webhooks import Delivery, DeliveryList, Webhook, WebhookCreate, WebhookCreated, WebhookList
from api.security import url_problem
from vstream.schema import STREAM_ID_PATTERN
from vstream.webhook_records import (
    DeliveryRecord,
    WebhookConfig,
    new_secret,
    new_webhook_id,
)
from vstream.webhook_urls import WEBHOOK_REFUSED, UnsafeUrl, check_webhook_url

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/streams/{stream_id}/webhooks", tags=["webhooks"])

MAX_WEBHOOKS_PER_STREAM = 20
StreamId = Annotated[str, Path(pattern=STREAM_ID_PATTERN, examples=["cam-entrance"])]
WebhookId = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{16}$", examples=["wh_3f9a1c2b7d4e5f60"])]
_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    403: problem_doc(
        403, "The key may not access this stream", "Stream not allowed", "this key may not access stream 'x'"
    ),
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_doc(
        404, "No such webhook on this stream", "Webhook not found", "stream 'x' has no webhook 'wh_...'"
    )
}


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    response_model_exclude_none=True,
    responses={
        **_ERRORS,
        409: problem_doc(
            409,
            "The stream has its maximum of webhooks",
            "Too many webhooks",
            f"a stream may have at most {MAX_WEBHOOKS_PER_STREAM} webhooks; delete one first",
        ),
        **JSON_BODY_ERRORS,
        422: problem_doc(
            422,
            "A bad URL (scheme, credentials, a private or loopback host) or kinds",
            WEBHOOK_REFUSED,
            "url: host '127.0.0.1' resolves to 127.0.0.1, a loopback address; only public hosts are allowed",
        ),
    },
    summary="Subscribe a URL to the stream's event changes",
)
async def create_webhook(
    stream_id: StreamId,
    body: Annotated[
        WebhookCreate,
        Body(
            openapi_examples={
                "all kinds, generated secret": {"value": {"url": "https://hooks.example.com/vstream"}},
                "opens and closes, own secret": {
                    "value": {
                        "url": "https://hooks.example.com/vstream",
                        "kinds": ["open", "close"],
                        "secret": "a-long-shared-secret-of-your-own",
                    }
                },
            }
        ),
    ],
    res: Res,
    caller: Caller,
) -> WebhookCreated:
    """Subscribe a URL to the stream's event changes. Each POST is signed with the secret: see the
    X-Vstream-Signature header (``sha256=`` HMAC-SHA256 of ``"<X-Vstream-Timestamp>." + body``)."""
    require_stream(caller, stream_id)
    try:
        await asyncio.to_thread(check_webhook_url, body.url, res.settings.api)  # resolves the host
    except UnsafeUrl as exc:
        raise url_problem(exc) from exc
    key = res.keys.webhooks(stream_id)
    if await res.redis.hlen(key) >= MAX_WEBHOOKS_PER_STREAM:
        raise Problem(
            409,
            "Too many webhooks",
            f"a stream may have at most {MAX_WEBHOOKS_PER_STREAM} webhooks; delete one first",
        )
    seconds, micros = await res.redis.time()  # the feed's clock: entry ids are Redis time too
    config = WebhookConfig(
        webhook_id=new_webhook_id(),
        stream_id=stream_id,
        url=body.url,
        kinds=body.kinds,
        secret=body.secret or new_secret(),
        created_at=seconds + micros / 1e6,
    )
    await res.redis.hset(key, config.webhook_id, config.model_dump_json())
    logger.info("webhook %s created for stream %s by %s", config.webhook_id, stream_id, caller.name)
    generated = config.secret if body.secret is None else None
    return WebhookCreated(**_public(config).model_dump(), secret=generated)


@router.get("", response_model=WebhookList, responses=_ERRORS, summary="List the stream's webhooks")
async def list_webhooks(stream_id: StreamId, res: Res, caller: Caller) -> WebhookList:
    require_stream(caller, stream_id)
    raw = await res.redis.hgetall(res.keys.webhooks(stream_id))
    hooks = [_public(WebhookConfig.model_validate_json(v)) for v in raw.values()]
    return WebhookList(items=sorted(hooks, key=lambda h: h.created_at))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, **_NOT_FOUND},
    summary="Delete a webhook",
)
async def delete_webhook(stream_id: StreamId, webhook_id: WebhookId, res: Res, caller: Caller) -> Response:
    """Stops deliveries at once; ones waiting for a retry are dropped."""
    require_stream(caller, stream_id)
    if not await res.redis.hdel(res.keys.webhooks(stream_id), webhook_id):
        raise _not_found(stream_id, webhook_id)
    # the webhook's own keys share its hash tag: one DEL; the due set spans webhooks, so it comes after
    await res.redis.delete(res.keys.webhook_queue(webhook_id), res.keys.webhook_deliveries(webhook_id))
    await res.redis.zrem(res.keys.webhook_due, webhook_id)
    logger.info("webhook %s of stream %s deleted by %s", webhook_id, stream_id, caller.name)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    responses={**_ERRORS, **_NOT_FOUND},
    summary="Recent deliveries of a webhook",
)
async def list_deliveries(
    stream_id: StreamId,
    webhook_id: WebhookId,
    res: Res,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=100, description="How many of the newest deliveries")] = 20,
) -> DeliveryList:
    """The webhook's most recent deliveries, newest first, with their retry state."""
    require_stream(caller, stream_id)
    if not await res.redis.hexists(res.keys.webhooks(stream_id), webhook_id):
        raise _not_found(stream_id, webhook_id)
    ids = await res.redis.lrange(res.keys.webhook_deliveries(webhook_id), 0, limit - 1)
    if not ids:
        return DeliveryList(items=[])
    raws = await res.redis.mget([res.keys.webhook_delivery(webhook_id, _text(i)) for i in ids])
    records = [DeliveryRecord.model_validate_json(r) for r in raws if r]
    return DeliveryList(items=[Delivery(**r.model_dump(exclude={"body"})) for r in records])


def _public(config: WebhookConfig) -> Webhook:
    return Webhook(**config.model_dump(exclude={"secret"}))


def _not_found(stream_id: str, webhook_id: str) -> Problem:
    return Problem(404, "Webhook not found", f"stream {stream_id!r} has no webhook {webhook_id!r}")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
