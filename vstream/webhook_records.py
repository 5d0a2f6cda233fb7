"""What a webhook is and what one delivery of it records: the JSON kept in Redis (written by the API and
the dispatcher, read back by ``GET .../deliveries``), and the ids of both."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Literal

from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

Kind = Literal["open", "update", "close"]
KINDS: tuple[Kind, ...] = ("open", "update", "close")
Status = Literal["pending", "retrying", "delivered", "failed"]
TERMINAL: frozenset[str] = frozenset({"delivered", "failed"})


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
