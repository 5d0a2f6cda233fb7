"""The signature of a webhook POST: what the dispatcher sends and what a receiver checks.

::

    X-Vstream-Timestamp: <unix seconds>
    X-Vstream-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>
    X-Vstream-Delivery:  <delivery id>   (stable across retries: receivers dedupe on it)
    X-Vstream-Event:     open | update | close
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

logger = logging.getLogger(__name__)


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
