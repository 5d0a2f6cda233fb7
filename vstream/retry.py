"""Retry timing shared by every component that calls something that can fail for a while (webhook
receivers, the model server, live sources, ingest jobs): one exponential backoff and one reading of
``Retry-After``."""

from __future__ import annotations

import email.utils
import random
import time


def backoff_s(
    attempt: int,
    base_s: float = 1.0,
    cap_s: float = 300.0,
    *,
    jitter: tuple[float, float] = (0.5, 1.0),
    rng: random.Random | None = None,
) -> float:
    """Delay after failed attempt ``attempt`` (1-based): ``base * 2^(attempt-1)`` capped at ``cap_s``, times
    a random factor in ``jitter`` so that clients failing together do not retry in lockstep."""
    delay = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    low, high = jitter
    return float(delay * (low + (high - low) * (rng or random).random()))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
