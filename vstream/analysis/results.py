"""Validated result types for GLM-4.5V output.

These are the only shapes that leave the parser: every consumer (workers, API, storage) can rely on the
invariants enforced here instead of re-checking model output. Times are seconds relative to the start of
the clip the model saw; boxes are pixels of that clip's (possibly resized) frames.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from vstream.vocabulary import Task, Wire

logger = logging.getLogger(__name__)


# Model grounding coordinates are integers on a 0..1000 grid regardless of the frame's aspect ratio.
NORMALIZED_SCALE = 1000.0

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Seconds = Annotated[float, Field(ge=0.0)]


def _check_span(start_s: float, end_s: float) -> None:
    if end_s < start_s:
        raise ValueError(f"end_s ({end_s}) must be >= start_s ({start_s})")


class Box(Wire):
    """Axis-aligned box in pixels of the clip frame (origin top-left)."""

    x1: float = Field(ge=0.0)
    y1: float = Field(ge=0.0)
    x2: float = Field(ge=0.0)
    y2: float = Field(ge=0.0)
    label: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.x1 > self.x2 or self.y1 > self.y2:
            raise ValueError(f"box corners out of order: ({self.x1},{self.y1})-({self.x2},{self.y2})")
        return self

    @classmethod
    def from_normalized(
        cls, coords: Sequence[float], width: int, height: int, label: str | None = None
    ) -> Box:
        """Convert GLM's 0..1000 grid ``[x1, y1, x2, y2]`` to pixels of a ``width`` x ``height`` frame.

        Coordinates are clamped to the grid and swapped corners are reordered, because the model emits
        both routinely and neither makes the box meaningless. Raises ValueError for the wrong number of
        values, non-finite values or a non-positive frame size.
        """
        if len(coords) != 4:
            raise ValueError(f"a box needs 4 coordinates, got {len(coords)}")
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        vals = [float(c) for c in coords]
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"non-finite box coordinate in {vals}")
        a, b, c, d = (min(max(v, 0.0), NORMALIZED_SCALE) for v in vals)
        x1, x2 = sorted((a, c))
        y1, y2 = sorted((b, d))
        sx, sy = width / NORMALIZED_SCALE, height / NORMALIZED_SCALE
        # Sub-millipixel digits are float noise (448 * 0.1 = 44.800000000000004) that bloats the wire format.
        return cls(
            x1=round(x1 * sx, 3),
            y1=round(y1 * sy, 3),
            x2=round(x2 * sx, 3),
            y2=round(y2 * sy, 3),
            label=label,
        )


class Detection(Wire):
    """An event recognised in a clip."""

    label: NonEmptyStr
    start_s: Seconds
    end_s: Seconds
    confidence: float = Field(ge=0.0, le=1.0)
    description: str = ""
    boxes: list[Box] = Field(default_factory=list)

    @model_validator(mode="after")
    def _span(self) -> Self:
        _check_span(self.start_s, self.end_s)
        return self


class Segment(Wire):
    """A temporal chapter of a clip."""

    start_s: Seconds
    end_s: Seconds
    title: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _span(self) -> Self:
        _check_span(self.start_s, self.end_s)
        return self


class Caption(Wire):
    text: NonEmptyStr


class ParsedOutput(Wire):
    """Outcome of parsing one model answer.

    ``ok`` means the answer yielded a usable result for ``task``; an explicit empty list ("nothing seen") is
    ok with zero items. ``error`` explains a failure, or what was lost when ``ok`` is True but the result is
    partial (skipped items, truncation). ``raw`` is always the untouched model text so failures can be
    replayed.
    """

    task: Task
    ok: bool
    detections: list[Detection] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    caption: Caption | None = None
    unassigned_boxes: list[Box] = Field(default_factory=list)
    thinking: str | None = None
    raw: str
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _matches_task(self) -> Self:
        if self.detections and self.task != "events":
            raise ValueError("detections are only valid for task 'events'")
        if self.segments and self.task != "segments":
            raise ValueError("segments are only valid for task 'segments'")
        if self.caption is not None and self.task != "caption":
            raise ValueError("caption is only valid for task 'caption'")
        if self.ok and self.task == "caption" and self.caption is None:
            raise ValueError("an ok caption result needs a caption")
        return self

    @property
    def item_count(self) -> int:
        """Number of result items for the task (a caption counts as one)."""
        if self.task == "events":
            return len(self.detections)
        if self.task == "segments":
            return len(self.segments)
        return 0 if self.caption is None else 1
