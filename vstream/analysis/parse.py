"""Tolerant parsing of raw GLM-4.5V answers into `ParsedOutput`.

The model is asked for JSON but routinely wraps it in think blocks, ``<answer>`` tags, code fences and
prose, truncates it at the token limit, or bends the syntax (single quotes, trailing commas, Python
literals). Rather than rejecting such answers we repair what is unambiguous and record every guess in
``warnings``, so a partly broken answer still yields its good items and the loss stays visible.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from vstream.analysis.coerce import (
    BOX_KEYS,
    MAX_WARNINGS,
    RANGE_KEYS,
    START_KEYS,
    Ctx,
    as_labels,
    as_text,
    box_groups,
    match_label,
    norm_keys,
    norm_label,
    pick,
    take_markers,
    time_span,
    to_confidence,
)
from vstream.analysis.jsonrepair import (
    BOX_RE,
    MAX_CANDIDATES,
    MAX_DEPTH,
    MAX_TOKENS,
    Found,
    extract_json,
    fix_surrogates,
    marker_groups,
)
from vstream.analysis.results import Box, Caption, Detection, ParsedOutput, Segment
from vstream.vocabulary import TASKS, Task

# The limits stay importable from here (they were defined in this module before the split).
__all__ = ["MAX_CANDIDATES", "MAX_DEPTH", "MAX_TOKENS", "MAX_WARNINGS", "parse_output"]

logger = logging.getLogger(__name__)

# Answer clean-up: box markers that do not hold coordinates, other special tokens, tags and fences.
_BOX_OR_MARKER_RE = re.compile(rf"{BOX_RE.pattern}|<\|(?:begin|end)_of_box\|>")
_SPECIAL_TOKEN_RE = re.compile(r"<\|(?!begin_of_box\|>|end_of_box\|>)[A-Za-z_/]{1,32}\|>")
_THINK_TAG_RE = re.compile(r"</?think>", re.IGNORECASE)
_TAG_RES = {
    tag: re.compile(re.escape(tag), re.IGNORECASE) for tag in ("<think>", "</think>", "<answer>", "</answer>")
}
_FENCE_RE = re.compile(r"```[A-Za-z0-9_+-]*")

_WRAPPER_KEYS = (
    "events", "detections", "segments", "chapters", "results", "result", "items", "data", "output",
    "predictions", "annotations", "scenes", "timeline", "answer", "response",
)  # fmt: skip
_LABEL_KEYS = ("label", "event", "event_type", "event_label", "type", "name", "category", "class", "action",
               "activity", "title")  # fmt: skip
_TITLE_KEYS = ("title", "name", "label", "heading", "topic", "chapter", "scene", "event")
_CONF_KEYS = ("confidence", "score", "probability", "prob", "conf", "certainty", "likelihood")
_DESC_KEYS = ("description", "desc", "details", "detail", "summary", "caption", "text", "reason",
              "reasoning", "explanation", "evidence", "notes")  # fmt: skip
_CAPTION_KEYS = ("caption", "description", "text", "summary", "content", "answer", "result", "output")


# ---------------------------------------------------------------------------------------------- items


def _detection(item: Any, ctx: Ctx, where: str) -> Detection | None:
    if not isinstance(item, dict):
        ctx.warn(f"{where}: skipped, expected an object but got {type(item).__name__}")
        return None
    norm, markers = take_markers(norm_keys(item))
    label = as_text(pick(norm, _LABEL_KEYS))
    if not label:
        ctx.warn(f"{where}: skipped, no label")
        return None
    span = time_span(norm, ctx, where)
    if span is None:
        return None
    pairs = box_groups(pick(norm, BOX_KEYS)) + [(g, None) for g in markers]
    boxes = [b for g, lbl in pairs if (b := ctx.box(g, where, lbl)) is not None]
    try:
        return Detection(
            label=match_label(label, ctx, where),
            start_s=span[0],
            end_s=span[1],
            confidence=to_confidence(pick(norm, _CONF_KEYS), ctx, where),
            description=as_text(pick(norm, _DESC_KEYS)) or "",
            boxes=boxes,
        )
    except ValidationError as exc:
        ctx.warn(f"{where}: skipped, invalid ({exc.errors()[0]['msg']})")
        return None


def _segment(item: Any, ctx: Ctx, where: str) -> Segment | None:
    if not isinstance(item, dict):
        ctx.warn(f"{where}: skipped, expected an object but got {type(item).__name__}")
        return None
    norm, markers = take_markers(norm_keys(item))
    span = time_span(norm, ctx, where)
    if span is None:
        return None
    ctx.unassigned.extend(b for g in markers if (b := ctx.box(g, where)) is not None)
    title = as_text(pick(norm, _TITLE_KEYS)) or ""
    desc_keys = [k for k in _DESC_KEYS if k not in _TITLE_KEYS]
    try:
        return Segment(
            start_s=span[0], end_s=span[1], title=title, description=as_text(pick(norm, desc_keys)) or ""
        )
    except ValidationError as exc:
        ctx.warn(f"{where}: skipped, invalid ({exc.errors()[0]['msg']})")
        return None


def _find_items(value: Any, ctx: Ctx, depth: int = 0) -> list[Any] | None:
    """The item list: a top-level list, a list under a wrapper key, or a single bare item."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict) or depth > 3:
        return None
    norm = norm_keys(value)
    for key in _WRAPPER_KEYS:
        if (
            isinstance(norm.get(key), list | dict)
            and (found := _find_items(norm[key], ctx, depth + 1)) is not None
        ):
            return found
    if pick(norm, (*_LABEL_KEYS, *START_KEYS, *RANGE_KEYS)) is not None:
        return [value]
    lists = [(k, v) for k, v in norm.items() if isinstance(v, list)]
    if len(lists) == 1:
        ctx.warn(f"items taken from unexpected key {lists[0][0]!r}")
        return lists[0][1]
    return None


def _clean_segments(segments: list[Segment], ctx: Ctx) -> list[Segment]:
    out: list[Segment] = []
    seen: set[tuple[float, float, str, str]] = set()
    for seg in sorted(segments, key=lambda s: (s.start_s, s.end_s)):
        key = (round(seg.start_s, 3), round(seg.end_s, 3), seg.title, seg.description)
        if seg.end_s - seg.start_s < 1e-6:
            ctx.warn(f"dropped zero-length segment at {seg.start_s:g}s ({seg.title!r})")
        elif key in seen:
            ctx.warn(f"dropped duplicate segment [{seg.start_s:g}s, {seg.end_s:g}s] ({seg.title!r})")
        else:
            seen.add(key)
            out.append(seg)
    return out


# ---------------------------------------------------------------------------------------------- answer


def _find_tag(text: str, tag: str, start: int = 0) -> int:
    # A regex rather than text.lower().find(): lower() can change the length of some characters.
    m = _TAG_RES[tag].search(text, start)
    return -1 if m is None else m.start()


def _split_thinking(text: str) -> tuple[str, str | None, str | None]:
    """(answer, thinking, error). Handles a missing opening tag (the chat template may emit it)."""
    open_i, close_i = _find_tag(text, "<think>"), _find_tag(text, "</think>")
    if open_i < 0 and close_i < 0:
        return text, None, None
    if close_i >= 0 and (open_i < 0 or close_i < open_i):
        return text[close_i + 8 :], text[:close_i].strip(), None
    if close_i < 0:
        thinking, answer = text[open_i + 7 :].strip(), text[:open_i]
        if answer.strip():
            return answer, thinking, None
        return "", thinking, "unterminated <think> block: output ended while the model was still reasoning"
    thinking = text[open_i + 7 : close_i].strip()
    return text[:open_i] + text[close_i + 8 :], thinking, None


def _clean_answer(text: str, ctx: Ctx) -> str:
    text = _THINK_TAG_RE.sub(" ", text)
    a, b = _find_tag(text, "<answer>"), _find_tag(text, "</answer>")
    if a >= 0:
        b = _find_tag(text, "</answer>", a)
        if b < 0:
            ctx.warn("unterminated <answer> block")
        text = text[a + 8 : b if b >= 0 else len(text)]
    elif b >= 0:
        text = text[:b]
    text = _BOX_OR_MARKER_RE.sub(lambda m: m.group(0) if m.group(1) is not None else " ", text)
    return _FENCE_RE.sub(" ", _SPECIAL_TOKEN_RE.sub(" ", text))


def _outside_boxes(answer: str, found: Found | None, ctx: Ctx) -> list[Box]:
    groups = list(found.stray_boxes) if found else []
    for m in BOX_RE.finditer(answer):
        if found is None or not found.start <= m.start() < found.end:
            groups.extend(marker_groups(m.group(1)))
    return [b for g in groups if (b := ctx.box(g, "answer")) is not None]


def _is_item_json(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and (not value or any(isinstance(v, dict) for v in value))
    )


def _caption_text(value: Any, depth: int = 0) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return " ".join(value)
    if isinstance(value, dict) and depth < 3:
        norm = norm_keys(value)
        for key in _CAPTION_KEYS:
            if key in norm and (text := _caption_text(norm[key], depth + 1)) is not None:
                return text
    return None


def _note_found(found: Found, answer: str, ctx: Ctx) -> None:
    for note in found.notes:
        ctx.warn(note)
    outside = len(answer[: found.start].strip()) + len(answer[found.end :].strip())
    if outside:
        ctx.warn(f"ignored {outside} characters of text around the JSON")


def _parse_caption(answer: str, ctx: Ctx, notes: list[str]) -> tuple[Caption | None, str | None]:
    found = extract_json(answer, lambda v: isinstance(v, dict) and _caption_text(v) is not None, notes)
    text: str | None = None
    if found is not None and (found.whole or isinstance(found.value, dict)):
        text = _caption_text(found.value)
    if text is None and answer.lstrip()[:1] in ("{", "["):
        return None, "JSON answer has no caption"
    if text is None or found is None:  # found is checked only to narrow the type
        ctx.warn("caption was plain text, not JSON")
        text = re.sub(r"^\s*(?:caption|description)\s*:\s*", "", answer, flags=re.IGNORECASE)
    else:
        _note_found(found, answer, ctx)
    ctx.unassigned.extend(_outside_boxes(text, None, ctx))
    text = " ".join(fix_surrogates(BOX_RE.sub(" ", text)).split())
    if not text:
        return None, "empty caption"
    truncated = found is not None and found.truncated
    return Caption(text=text), "output was truncated; caption may be incomplete" if truncated else None


def _parse_items(answer: str, ctx: Ctx, notes: list[str]) -> tuple[list[Any], bool, str | None]:
    """(items, ok, error) for the list tasks."""
    found = extract_json(answer, _is_item_json, notes)
    ctx.unassigned.extend(_outside_boxes(answer, found, ctx))
    if found is None:
        return [], False, "no JSON found in the answer" + (f" ({'; '.join(notes)})" if notes else "")
    _note_found(found, answer, ctx)
    raw_items = _find_items(found.value, ctx)
    if raw_items is None:
        got = "an object without one" if isinstance(found.value, dict) else type(found.value).__name__
        return [], False, f"expected a JSON list of items, got {got}"
    items: list[Any]
    if ctx.task == "events":
        items = [d for i, it in enumerate(raw_items) if (d := _detection(it, ctx, f"item {i}")) is not None]
        skipped = len(raw_items) - len(items)
    else:
        segs = [s for i, it in enumerate(raw_items) if (s := _segment(it, ctx, f"item {i}")) is not None]
        skipped = len(raw_items) - len(segs)
        items = _clean_segments(segs, ctx)  # dropping duplicates/empties loses nothing: not "skipped"
    if not items:
        if found.truncated:
            return [], False, "output was truncated before any complete item"
        if raw_items:
            return [], False, f"none of the {len(raw_items)} item(s) were usable"
        return [], True, None
    partial = [f"{skipped} item(s) skipped"] if skipped else []
    partial += ["output was truncated; the last item may be missing"] if found.truncated else []
    return items, True, "; ".join(partial) or None


def _attach_unassigned(detections: list[Detection], ctx: Ctx) -> list[Detection]:
    if not ctx.unassigned:
        return detections
    if ctx.task == "events" and len(detections) == 1:
        ctx.warn(f"attached {len(ctx.unassigned)} box(es) found outside the JSON to the only detection")
        only = detections[0]
        merged = only.model_copy(update={"boxes": [*only.boxes, *ctx.unassigned]})
        ctx.unassigned = []
        return [merged]
    ctx.warn(f"{len(ctx.unassigned)} box(es) could not be tied to an item; see unassigned_boxes")
    return detections


def _parse(raw: str, task: Task, ctx: Ctx) -> ParsedOutput:
    answer, thinking, error = _split_thinking(raw)
    result: dict[str, Any] = {"task": task, "raw": raw, "thinking": thinking, "ok": False}
    if error is None:
        answer = _clean_answer(answer, ctx)
        if not answer.strip():
            error = "empty model output" if not raw.strip() else "empty answer"
    notes: list[str] = []
    if error is None and task == "caption":
        caption, error = _parse_caption(answer, ctx, notes)
        result.update(caption=caption, ok=caption is not None)
        _attach_unassigned([], ctx)
    elif error is None:
        items, result["ok"], error = _parse_items(answer, ctx, notes)
        if task == "events":
            result["detections"] = _attach_unassigned(items, ctx)
        else:
            result["segments"] = items
            _attach_unassigned([], ctx)
    if ctx.suppressed:
        ctx.warnings.append(f"{ctx.suppressed} more warning(s) suppressed")
    return ParsedOutput(**result, error=error, warnings=ctx.warnings, unassigned_boxes=ctx.unassigned)


def parse_output(
    raw: str,
    task: str,
    *,
    clip_duration_s: float,
    width: int,
    height: int,
    allowed_labels: Sequence[str] | None = None,
) -> ParsedOutput:
    """Parse one raw model answer for ``task`` ("segments", "events" or "caption"). Never raises.

    Times in the result are seconds relative to the clip start, clamped to ``[0, clip_duration_s]``;
    boxes are pixels of a ``width`` x ``height`` frame. Failures come back as ``ok=False`` with ``error``
    set and ``raw`` kept.
    """
    name: Task = "events"  # ParsedOutput needs a valid task even when the caller passed a bad one
    text = raw if isinstance(raw, str) else ""
    try:
        if not isinstance(raw, str):  # defensive: callers may hand over bytes straight from a queue
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        key = str(task).strip().lower()
        if key not in TASKS:
            return ParsedOutput(
                task=name, ok=False, raw=text, error=f"unknown task {task!r}; expected {TASKS}"
            )
        name = key
        duration = float(clip_duration_s)
        ctx = Ctx(
            task=name,
            duration=duration if math.isfinite(duration) and duration > 0 else None,
            width=int(width),
            height=int(height),
            labels={norm_label(lbl): lbl for lbl in as_labels(allowed_labels) if norm_label(lbl)},
        )
        if ctx.duration is None:
            ctx.warn(f"clip_duration_s={clip_duration_s!r} is not a positive duration; times not clamped")
        return _parse(text, name, ctx)
    except Exception as exc:
        logger.debug("parse_output failed on %d chars of %s output", len(text), name, exc_info=True)
        return ParsedOutput(task=name, ok=False, raw=text, error=f"parser error: {exc!r:.200}")
