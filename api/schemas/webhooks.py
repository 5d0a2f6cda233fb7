"""Request and response bodies of /v1/streams/{stream_id}/webhooks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from vstream.webhook_records import KINDS, Kind, Status

_URL = "https://hooks.example.com/vstream"
_WEBHOOK: dict[str, JsonValue] = {
    "webhook_id": "wh_3f9a1c2b7d4e5f60",
    "stream_id": "cam-entrance",
    "url": _URL,
    "kinds": ["open", "close"],
    "created_at": 1767225600.0,
}
_DELIVERY: dict[str, JsonValue] = {
    "delivery_id": "dl_5b1e0c8a9f3d2e7a4c6b8d0f",
    "event_id": "9c2f4a1b8e7d6c5a",
    "kind": "open",
    "attempts": 2,
    "status": "delivered",
    "last_status_code": 200,
    "last_error": None,
    "next_attempt_at": None,
    "delivered_at": 1767225661.25,
    "created_at": 1767225660.0,
}


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": _URL, "kinds": ["open", "close"]},
                {"url": _URL, "secret": "a-long-shared-secret-of-your-own"},
            ]
        },
    )

    url: str = Field(max_length=2048, description="http(s) URL that receives a signed POST per event change.")
    kinds: list[Kind] = Field(
        default_factory=lambda: list(KINDS),
        min_length=1,
        max_length=3,
        description="Event changes to deliver: any of open, update, close (default: all).",
    )
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=256,
        description="HMAC-SHA256 signing secret; generated when absent (and then returned once).",
    )

    @field_validator("kinds")
    @classmethod
    def _canonical(cls, kinds: list[Kind]) -> list[Kind]:
        return [k for k in KINDS if k in kinds]  # deduplicated, in lifecycle order


class Webhook(BaseModel):
    """A webhook as listed: never its secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [_WEBHOOK]})

    webhook_id: str
    stream_id: str
    url: str
    kinds: list[Kind]
    created_at: float = Field(description="Unix seconds; only event changes after it are delivered.")


class WebhookCreated(Webhook):
    """The 201 answer. ``secret`` is present only when the server generated it: store it now, it is
    never shown again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_WEBHOOK, "secret": "kq3V0m0x7bqk0nR1cWwzJz8Q2VJ4u9sXj0Kf1xk8mHc"}]
        }
    )

    secret: str | None = Field(None, description="The generated signing secret (shown once).")


class WebhookList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_WEBHOOK]}]})

    items: list[Webhook] = Field(description="Oldest first.")


class Delivery(BaseModel):
    """One event change sent (or being sent) to one webhook."""

    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY]})

    delivery_id: str = Field(description="Also sent as X-Vstream-Delivery; stable across retries.")
    event_id: str
    kind: Kind
    attempts: int
    status: Status = Field(description="pending (not tried yet), retrying, delivered or failed.")
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: float | None = Field(None, description="Unix seconds of the next try (retrying).")
    delivered_at: float | None = None
    created_at: float


class DeliveryList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_DELIVERY]}]})

    items: list[Delivery] = Field(description="Newest first.")
