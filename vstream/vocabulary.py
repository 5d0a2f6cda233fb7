"""The words every layer shares: the tasks a clip can be analysed for and the base of every wire type.

One owner, so the API, the queue schemas, the presets and the parser cannot drift apart (they used to
declare the task literal five times) and so that ``vstream.analysis`` and ``vstream.model`` import their
common words from here rather than from each other.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Task = Literal["segments", "events", "caption"]
TASKS: tuple[Task, ...] = ("segments", "events", "caption")


class Wire(BaseModel):
    """Base of the types that cross a process boundary (Kafka, Redis, HTTP): immutable, no unknown fields,
    no NaN/inf (JSON cannot carry them, and a NaN time breaks every range query)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
