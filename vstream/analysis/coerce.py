"""Coercion of loosely typed model fields: times, confidences, boxes and labels.

Every helper accepts whatever the model produced (numbers, strings in many formats, lists, nested
objects) and returns a clean value or ``None``; guesses and clamps are reported through ``Ctx.warn``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vstream.analysis.jsonrepair import BOX_RE, FLOAT_RE, fix_surrogates, marker_groups
from vstream.analysis.results import Box
from vstream.vocabulary import Task

# Garbage can yield thousands of warnings; keep the first ones and count the rest.
MAX_WARNINGS = 100

_CLOCK_RE = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)")
_UNITS_RE = re.compile(
    r"(?:(\d+(?:\.\d+)?)\s*h(?:ours?|rs?)?)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in(?:ute)?s?)?)?"
    r"\s*(?:(\d+(?:\.\d+)?)\s*s(?:ec(?:ond)?s?)?)?"
)
_MILLIS_RE = re.compile(r"(\d+(?:\.\d+)?)\s*ms")
# "," separates a range unless it is an SRT-style millisecond comma ("00:01:05,500").
_RANGE_SPLIT_RE = re.compile(r"\s*(?:-|–|—|~|\bto\b|,(?!\d{3}\b))\s*")
_CONFIDENCE_WORDS = {"very high": 0.95, "high": 0.9, "medium": 0.6, "moderate": 0.6, "low": 0.3,
                     "very low": 0.1}  # fmt: skip

START_KEYS = ("start_s", "start", "start_time", "start_sec", "start_seconds", "start_timestamp", "begin",
              "begin_time", "from", "t_start", "onset")  # fmt: skip
END_KEYS = ("end_s", "end", "end_time", "end_sec", "end_seconds", "end_timestamp", "stop", "finish", "to",
            "t_end")  # fmt: skip
RANGE_KEYS = ("timestamp", "timestamps", "time", "times", "time_range", "timerange", "span", "interval",
              "range", "segment", "window", "at")  # fmt: skip
BOX_KEYS = ("boxes", "box", "bbox", "bboxes", "bbox_2d", "bounding_box", "bounding_boxes", "region",
            "regions")  # fmt: skip


@dataclass
class Ctx:
    """One parse's settings (task, clip duration, frame size, allowed labels) and what it has collected."""

    task: Task
    duration: float | None
    width: int
    height: int
    labels: dict[str, str]  # normalised allowed label -> canonical spelling
    warnings: list[str] = field(default_factory=list)
    suppressed: int = 0
    unassigned: list[Box] = field(default_factory=list)

    def warn(self, msg: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(msg)
        else:
            self.suppressed += 1

    def box(self, coords: Sequence[float], where: str, label: str | None = None) -> Box | None:
        if any(not 0.0 <= c <= 1000.0 for c in coords):
            self.warn(f"{where}: box {list(coords)} outside the 0..1000 grid, clamped")
        try:
            return Box.from_normalized(coords, self.width, self.height, label)
        except ValueError as exc:
            self.warn(f"{where}: box {list(coords)} dropped ({exc})")
            return None


def _norm_key(key: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(key).strip().lower())


def norm_keys(d: dict[Any, Any]) -> dict[str, Any]:
    return {_norm_key(k): v for k, v in d.items()}


def pick(d: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = d.get(key)
        if value is not None and value != "":
            return value
    return None


def as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return fix_surrogates(value).strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and value:
        return as_text(value[0]) if not isinstance(value[0], list | dict) else None
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and FLOAT_RE.fullmatch(value.strip()):
        num = float(value)
        return num if math.isfinite(num) else None
    return None


def _to_seconds(value: Any) -> float | None:
    """Seconds from a number or "hh:mm:ss(.ms)", "mm:ss", "65s", "1m5s", "1500ms", "12.5"."""
    if not isinstance(value, str):
        return _as_float(value)
    s = value.strip().lower().strip(" []()<>'\"~@≈").replace(",", ".")
    if m := _CLOCK_RE.fullmatch(s):
        hours, minutes, secs = m.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    if m := _MILLIS_RE.fullmatch(s):
        return float(m.group(1)) / 1000.0
    if (m := _UNITS_RE.fullmatch(s)) and any(m.groups()):
        h, mi, se = (float(g) if g else 0.0 for g in m.groups())
        return h * 3600 + mi * 60 + se
    return _as_float(s)


def _to_range(value: Any) -> tuple[float | None, float | None]:
    """(start, end) from a range-ish value; a single time means an instant."""
    if isinstance(value, list):
        if not value:
            return None, None
        return _to_seconds(value[0]), _to_seconds(value[1] if len(value) > 1 else value[0])
    if isinstance(value, dict):
        norm = norm_keys(value)
        return _to_seconds(pick(norm, START_KEYS)), _to_seconds(pick(norm, END_KEYS))
    if isinstance(value, str):
        parts = _RANGE_SPLIT_RE.split(value.strip().strip("[]()"), maxsplit=1)
        if len(parts) == 2 and parts[0] and parts[1]:
            return _to_seconds(parts[0]), _to_seconds(parts[1])
    t = _to_seconds(value)
    return t, t


def time_span(norm: dict[str, Any], ctx: Ctx, where: str) -> tuple[float, float] | None:
    start, end = _to_seconds(pick(norm, START_KEYS)), _to_seconds(pick(norm, END_KEYS))
    if start is None and end is None and (rng := pick(norm, RANGE_KEYS)) is not None:
        start, end = _to_range(rng)
    if start is not None and end is None and (dur := _as_float(pick(norm, ("duration", "duration_s")))):
        end = start + dur
    if start is None or end is None:
        ctx.warn(f"{where}: skipped, missing or unreadable {'start' if start is None else 'end'} time")
        return None
    if start > end:
        ctx.warn(f"{where}: start {start:g}s after end {end:g}s, swapped")
        start, end = end, start
    limit = ctx.duration
    if end < 0 or (limit is not None and start > limit):
        ctx.warn(f"{where}: skipped, [{start:g}s, {end:g}s] lies outside the clip")
        return None
    if start < 0 or (limit is not None and end > limit):
        new_end = end if limit is None else min(end, limit)
        ctx.warn(
            f"{where}: [{start:g}s, {end:g}s] clamped to the clip as [{max(start, 0.0):g}s, {new_end:g}s]"
        )
        start, end = max(start, 0.0), new_end
    return start, end


def to_confidence(value: Any, ctx: Ctx, where: str) -> float:
    if value is None:
        ctx.warn(f"{where}: no confidence given, using 0.5")
        return 0.5
    num = _as_float(value)
    if isinstance(value, str):
        s = value.strip().lower().replace("confidence", "").strip()
        if s in _CONFIDENCE_WORDS:
            return _CONFIDENCE_WORDS[s]
        if s.endswith("%") and (pct := _as_float(s[:-1])) is not None:
            num = pct / 100.0
    if num is None:
        ctx.warn(f"{where}: unreadable confidence {value!r:.40}, using 0.5")
        return 0.5
    if 1.0 < num <= 100.0:
        num /= 100.0  # the model answered in percent
    if not 0.0 <= num <= 1.0:
        ctx.warn(f"{where}: confidence {num:g} out of range, clamped")
    return min(max(num, 0.0), 1.0)


def box_groups(value: Any, depth: int = 0) -> list[tuple[list[float], str | None]]:
    """(coords, label) pairs from a box field: [x1,y1,x2,y2], lists of those, dicts or strings."""
    if isinstance(value, str):
        return [(g, None) for g in marker_groups(value)]
    if isinstance(value, dict):
        norm = norm_keys(value)
        label = as_text(norm.get("label"))
        if all(k in norm for k in ("x1", "y1", "x2", "y2")):
            coords = [_as_float(norm[k]) for k in ("x1", "y1", "x2", "y2")]
            return [([c for c in coords if c is not None], label)] if None not in coords else []
        inner = pick(norm, (*BOX_KEYS, "coords", "coordinates"))
        return [(g, label or lbl) for g, lbl in box_groups(inner, depth + 1)] if depth < 3 else []
    if isinstance(value, list):
        nums = [_as_float(v) for v in value]
        if len(value) == 4 and None not in nums:
            return [([n for n in nums if n is not None], None)]
        if depth < 3:
            return [pair for v in value[:64] for pair in box_groups(v, depth + 1)]
    return []


def take_markers(norm: dict[str, Any]) -> tuple[dict[str, Any], list[list[float]]]:
    """Pull grounding markers out of an item's string fields (GLM often puts them inside descriptions)."""
    groups: list[list[float]] = []
    out = dict(norm)
    for key, value in norm.items():
        if isinstance(value, str) and "<|begin_of_box|>" in value:
            for m in BOX_RE.finditer(value):
                groups.extend(marker_groups(m.group(1)))
            out[key] = " ".join(BOX_RE.sub(" ", value).split())
    return out, groups


def norm_label(label: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", label.lower()).split()).strip(" .,:;!?\"'")


def as_labels(allowed: Sequence[str] | None) -> list[str]:
    # A bare string is a Sequence[str] too; iterating it would allow single characters as labels.
    return [allowed] if isinstance(allowed, str) else [str(lbl) for lbl in allowed or ()]


def match_label(label: str, ctx: Ctx, where: str) -> str:
    if not ctx.labels:
        return label
    norm = norm_label(label)
    if norm in ctx.labels:
        return ctx.labels[norm]
    subs = [k for k in ctx.labels if min(len(k), len(norm)) >= 3 and (k in norm or norm in k)]
    close = sorted(subs, key=lambda k: abs(len(k) - len(norm)))[:1] or difflib.get_close_matches(
        norm, list(ctx.labels), n=1, cutoff=0.8
    )
    if close:
        ctx.warn(f"{where}: label {label!r} mapped to allowed label {ctx.labels[close[0]]!r}")
        return ctx.labels[close[0]]
    ctx.warn(f"{where}: label {label!r} is not one of the allowed labels, kept as is")
    return label
