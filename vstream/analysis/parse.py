"""Tolerant parsing of raw GLM-4.5V answers into `ParsedOutput`.

The model is asked for JSON but routinely wraps it in think blocks, ``<answer>`` tags, code fences and
prose, truncates it at the token limit, or bends the syntax (single quotes, trailing commas, Python
literals). Rather than rejecting such answers we repair what is unambiguous and record every guess in
``warnings``, so a partly broken answer still yields its good items and the loss stays visible.
"""

from __future__ import annotations

import bisect
import difflib
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import ValidationError

from vstream.analysis.results import TASKS, Box, Caption, Detection, ParsedOutput, Segment, Task

logger = logging.getLogger(__name__)

# Real answers nest 3-4 levels; anything deeper is garbage and must not cost stack or time.
MAX_DEPTH = 64
# Bounds the work spent on hostile/garbage input: candidates tried and tokens scanned per call.
MAX_CANDIDATES = 24
MAX_TOKENS = 200_000
MAX_WARNINGS = 100

# GLM uses the box markers both for grounding coordinates and to highlight a final answer; only
# coordinate-like content (numbers, separators, any bracket style) is a box, other markers are dropped.
_BOX_BODY = r"[\s\d.,+\-\[\]()<>]{1,400}?"
_BOX_RE = re.compile(rf"<\|begin_of_box\|>({_BOX_BODY})<\|end_of_box\|>")
_BOX_OR_MARKER_RE = re.compile(rf"{_BOX_RE.pattern}|<\|(?:begin|end)_of_box\|>")
_SPECIAL_TOKEN_RE = re.compile(r"<\|(?!begin_of_box\|>|end_of_box\|>)[A-Za-z_/]{1,32}\|>")
_THINK_TAG_RE = re.compile(r"</?think>", re.IGNORECASE)
_TAG_RES = {
    tag: re.compile(re.escape(tag), re.IGNORECASE) for tag in ("<think>", "</think>", "<answer>", "</answer>")
}
_FENCE_RE = re.compile(r"```[A-Za-z0-9_+-]*")
_OPEN_RE = re.compile(r"[\[{]")
# Keep number patterns unambiguous (never "\d+\.?\d*"): that backtracks quadratically on long digit runs.
_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_INT_RE = re.compile(r"[-+]?\d{1,30}")
_FLOAT_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<str>"[^"\\]*(?:\\.[^"\\]*)*(?P<dq>")?|'[^'\\]*(?:\\.[^'\\]*)*(?P<sq>')?)
    |(?P<box><\|begin_of_box\|>"""
    + _BOX_BODY
    + r"""<\|end_of_box\|>)
    |(?P<punct>[\[\]{},:])
    |(?P<time>\d+(?::\d+)+(?:[.,]\d+)?)
    |(?P<bare>[^\s\[\]{},:"'][^\[\]{},:"'\n]*)
    """,
    re.VERBOSE | re.DOTALL,
)
_LITERALS: dict[str, Any] = {
    "true": True, "false": False, "null": None, "none": None,
    "nan": None, "infinity": None, "-infinity": None, "undefined": None,
}  # fmt: skip

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

_WRAPPER_KEYS = (
    "events", "detections", "segments", "chapters", "results", "result", "items", "data", "output",
    "predictions", "annotations", "scenes", "timeline", "answer", "response",
)  # fmt: skip
_LABEL_KEYS = ("label", "event", "event_type", "event_label", "type", "name", "category", "class", "action",
               "activity", "title")  # fmt: skip
_TITLE_KEYS = ("title", "name", "label", "heading", "topic", "chapter", "scene", "event")
_START_KEYS = ("start_s", "start", "start_time", "start_sec", "start_seconds", "start_timestamp", "begin",
               "begin_time", "from", "t_start", "onset")  # fmt: skip
_END_KEYS = ("end_s", "end", "end_time", "end_sec", "end_seconds", "end_timestamp", "stop", "finish", "to",
             "t_end")  # fmt: skip
_RANGE_KEYS = ("timestamp", "timestamps", "time", "times", "time_range", "timerange", "span", "interval",
               "range", "segment", "window", "at")  # fmt: skip
_CONF_KEYS = ("confidence", "score", "probability", "prob", "conf", "certainty", "likelihood")
_DESC_KEYS = ("description", "desc", "details", "detail", "summary", "caption", "text", "reason",
              "reasoning", "explanation", "evidence", "notes")  # fmt: skip
_BOX_KEYS = ("boxes", "box", "bbox", "bboxes", "bbox_2d", "bounding_box", "bounding_boxes", "region",
             "regions")  # fmt: skip
_CAPTION_KEYS = ("caption", "description", "text", "summary", "content", "answer", "result", "output")


class _Stop(Exception):
    """Unexpected token: treat the input as ending here and repair like a truncation."""


class _Abort(Exception):
    """This candidate cannot be meaningful JSON (absurd nesting); try the next one."""


@dataclass
class _Found:
    value: Any
    start: int
    end: int
    whole: bool = False  # the entire answer was valid JSON
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    stray_boxes: list[list[float]] = field(default_factory=list)


@dataclass
class _Frame:
    container: list[Any] | dict[str, Any]
    state: str = "key"  # objects only: key -> colon -> value -> after
    key: str | None = None


def _fix_surrogates(s: str) -> str:
    # Lone surrogates (from "\ud83d" escapes or garbage) would make the result unserialisable.
    if _SURROGATE_RE.search(s):
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return s


def _unescape(s: str) -> str:
    if "\\" not in s:
        return _fix_surrogates(s)

    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        return chr(int(esc[1:], 16)) if len(esc) == 5 else _ESCAPES.get(esc, "\\" + esc)

    return _fix_surrogates(_ESCAPE_RE.sub(sub, s))


def _bare_value(tok: str) -> Any:
    low = tok.lower()
    if low in _LITERALS:
        return _LITERALS[low]
    if _INT_RE.fullmatch(tok):
        return int(tok)
    if _FLOAT_RE.fullmatch(tok):
        num = float(tok)
        return num if math.isfinite(num) else None
    return tok


def _marker_groups(text: str) -> list[list[float]]:
    """Coordinates inside a string, grouped by four (one box per group, leftovers ignored)."""
    nums = [float(n) for n in _NUMBER_RE.findall(text)]
    return [nums[i : i + 4] for i in range(0, len(nums) - 3, 4)]


class _RepairingParser:
    """Builds Python values from almost-JSON starting at ``start``.

    Iterative (an explicit stack, never recursion) so pathological nesting cannot raise RecursionError.
    On truncation the incomplete trailing element at the shallowest level that already holds a complete
    element is dropped, e.g. the half-written last event of a list, and every open bracket is closed.
    """

    def __init__(self, text: str, start: int, budget: list[int]) -> None:
        self.text, self.pos, self.budget = text, start, budget
        self.stack: list[_Frame] = []
        self.found = _Found(None, start, start)
        self.partial: str | None = None  # unterminated string value at the end of input
        self.last_bare: _Frame | None = None  # frame whose last value was an undelimited bare token
        self.done = False

    def parse(self) -> _Found:
        try:
            self._run()
        except _Stop as stop:
            self.found.notes.append(str(stop))
            self.last_bare = None
        if not self.done:
            self._close_truncated()
        self.found.end = self.pos
        return self.found

    def _run(self) -> None:
        text, end = self.text, len(self.text)
        while self.pos < end and not self.done:
            m = _TOKEN_RE.match(text, self.pos)
            if m is None:  # unreachable by construction of _TOKEN_RE; advance to stay safe
                self.pos += 1
                continue
            self.budget[0] -= 1
            if self.budget[0] < 0:
                raise _Stop(f"input too large: stopped scanning at offset {self.pos}")
            kind, tok, at = m.lastgroup, m.group(), self.pos
            self.pos = m.end()
            if kind == "ws":
                continue
            self.last_bare = None
            if kind == "punct":
                self._punct(tok, at)
            elif kind == "str":
                closed = m.group("dq") is not None or m.group("sq") is not None
                text_value = _unescape(tok[1:-1] if closed else tok[1:])
                if not closed:
                    self._partial_string(text_value)
                    self.pos = end
                    return
                self._value(text_value, as_key=text_value)
            elif kind == "box":
                self._box(tok)
            elif kind == "time":
                self._value(tok, as_key=tok)
            else:
                bare = tok.strip()
                if self._value(_bare_value(bare), as_key=bare):
                    self.last_bare = self.stack[-1] if self.stack else None

    def _value(self, value: Any, as_key: str | None = None) -> bool:
        """Attach a value (or take it as the next key); True if it was attached as a value."""
        if not self.stack:
            self.found.value, self.done = value, True
            return True
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            frame.container.append(value)
        elif frame.state in ("key", "after"):
            if as_key is None:
                raise _Stop(f"stopped at an unexpected value at offset {self.pos}")
            frame.key, frame.state = as_key, "colon"
            return False
        else:  # a missing ':' is tolerated: {"a" 1}
            frame.container[frame.key or ""] = value
            frame.key, frame.state = None, "after"
        return True

    def _punct(self, tok: str, at: int) -> None:
        top = self.stack[-1] if self.stack else None
        if tok in "[{":
            if len(self.stack) >= MAX_DEPTH:
                raise _Abort(f"JSON nested deeper than {MAX_DEPTH} levels")
            if top is not None and isinstance(top.container, dict) and top.state in ("key", "after"):
                raise _Stop(f"stopped at unexpected {tok!r} at offset {at}")
            self.stack.append(_Frame([] if tok == "[" else {}))
        elif tok in "]}":
            self._close(list if tok == "]" else dict)
        elif top is None or isinstance(top.container, list):
            if tok == ":":
                raise _Stop(f"stopped at unexpected ':' at offset {at}")
        elif tok == ",":
            top.key, top.state = None, "key"  # also drops a key that never got its value
        elif top.state == "colon":
            top.state = "value"
        elif top.state != "value":
            raise _Stop(f"stopped at unexpected ':' at offset {at}")

    def _close(self, kind: type) -> None:
        if not any(isinstance(f.container, kind) for f in self.stack):
            return  # stray closer with nothing to close: ignore it
        while self.stack:
            frame = self.stack.pop()
            self._value(frame.container)
            if isinstance(frame.container, kind):
                return
            self.found.notes.append("closed a bracket the model left open")

    def _box(self, tok: str) -> None:
        groups = _marker_groups(tok)
        top = self.stack[-1] if self.stack else None
        in_value_slot = top is not None and (
            isinstance(top.container, list) or top.state in ("colon", "value")
        )
        if in_value_slot and groups:
            self._value(groups[0] if len(groups) == 1 else groups)
        else:
            self.found.stray_boxes.extend(groups)

    def _partial_string(self, value: str) -> None:
        top = self.stack[-1] if self.stack else None
        if top is not None and (isinstance(top.container, list) or top.state in ("colon", "value")):
            self.partial = value

    def _close_truncated(self) -> None:
        self.found.truncated = True
        opened = len(self.stack)
        if self.last_bare is not None:  # a number/word cut off by the token limit may be incomplete
            container = self.last_bare.container
            if isinstance(container, list):
                container.pop()
            else:
                container.popitem()
        cut = next((i for i, f in enumerate(self.stack) if f.container), None)
        if cut is not None:
            del self.stack[cut + 1 :]
        elif self.partial is not None:
            self._value(self.partial)
        while self.stack:
            self._value(self.stack.pop().container)
        self.found.notes.append(
            f"output looks truncated: closed {opened} open bracket(s) and dropped the incomplete last element"
        )


def _extract_json(text: str, useful: Callable[[Any], bool], notes: list[str]) -> _Found | None:
    """First useful JSON value in ``text``: the whole text if it is valid JSON, else a repaired candidate."""
    lead = len(text) - len(text.lstrip())
    stripped = text.strip()
    try:
        return _Found(json.loads(stripped), lead, lead + len(stripped), whole=True)
    except (ValueError, RecursionError):
        pass
    markers = [m.span() for m in _BOX_RE.finditer(text)]
    marker_starts = [s for s, _ in markers]
    budget, tries, resume = [MAX_TOKENS], 0, 0
    fallback: _Found | None = None
    for m in _OPEN_RE.finditer(text):
        pos = m.start()
        i = bisect.bisect_right(marker_starts, pos) - 1
        if pos < resume or (i >= 0 and pos < markers[i][1]):
            continue
        tries += 1
        if tries > MAX_CANDIDATES:
            notes.append(f"gave up after {MAX_CANDIDATES} JSON candidates")
            break
        try:
            found = _RepairingParser(text, pos, budget).parse()
        except _Abort as exc:
            if str(exc) not in notes:
                notes.append(str(exc))
            continue
        if useful(found.value):
            return found
        fallback = fallback or found
        resume = found.end
        if budget[0] < 0:
            break
    return fallback


# ---------------------------------------------------------------------------------------------- fields


@dataclass
class _Ctx:
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


def _norm_keys(d: dict[Any, Any]) -> dict[str, Any]:
    return {_norm_key(k): v for k, v in d.items()}


def _pick(d: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = d.get(key)
        if value is not None and value != "":
            return value
    return None


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return _fix_surrogates(value).strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and value:
        return _as_text(value[0]) if not isinstance(value[0], list | dict) else None
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
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
        norm = _norm_keys(value)
        return _to_seconds(_pick(norm, _START_KEYS)), _to_seconds(_pick(norm, _END_KEYS))
    if isinstance(value, str):
        parts = _RANGE_SPLIT_RE.split(value.strip().strip("[]()"), maxsplit=1)
        if len(parts) == 2 and parts[0] and parts[1]:
            return _to_seconds(parts[0]), _to_seconds(parts[1])
    t = _to_seconds(value)
    return t, t


def _span(norm: dict[str, Any], ctx: _Ctx, where: str) -> tuple[float, float] | None:
    start, end = _to_seconds(_pick(norm, _START_KEYS)), _to_seconds(_pick(norm, _END_KEYS))
    if start is None and end is None and (rng := _pick(norm, _RANGE_KEYS)) is not None:
        start, end = _to_range(rng)
    if start is not None and end is None and (dur := _as_float(_pick(norm, ("duration", "duration_s")))):
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


def _confidence(value: Any, ctx: _Ctx, where: str) -> float:
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


def _box_groups(value: Any, depth: int = 0) -> list[tuple[list[float], str | None]]:
    """(coords, label) pairs from a box field: [x1,y1,x2,y2], lists of those, dicts or strings."""
    if isinstance(value, str):
        return [(g, None) for g in _marker_groups(value)]
    if isinstance(value, dict):
        norm = _norm_keys(value)
        label = _as_text(norm.get("label"))
        if all(k in norm for k in ("x1", "y1", "x2", "y2")):
            coords = [_as_float(norm[k]) for k in ("x1", "y1", "x2", "y2")]
            return [([c for c in coords if c is not None], label)] if None not in coords else []
        inner = _pick(norm, (*_BOX_KEYS, "coords", "coordinates"))
        return [(g, label or lbl) for g, lbl in _box_groups(inner, depth + 1)] if depth < 3 else []
    if isinstance(value, list):
        nums = [_as_float(v) for v in value]
        if len(value) == 4 and None not in nums:
            return [([n for n in nums if n is not None], None)]
        if depth < 3:
            return [pair for v in value[:64] for pair in _box_groups(v, depth + 1)]
    return []


def _take_markers(norm: dict[str, Any]) -> tuple[dict[str, Any], list[list[float]]]:
    """Pull grounding markers out of an item's string fields (GLM often puts them inside descriptions)."""
    groups: list[list[float]] = []
    out = dict(norm)
    for key, value in norm.items():
        if isinstance(value, str) and "<|begin_of_box|>" in value:
            for m in _BOX_RE.finditer(value):
                groups.extend(_marker_groups(m.group(1)))
            out[key] = " ".join(_BOX_RE.sub(" ", value).split())
    return out, groups


def _norm_label(label: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", label.lower()).split()).strip(" .,:;!?\"'")


def _as_labels(allowed: Sequence[str] | None) -> list[str]:
    # A bare string is a Sequence[str] too; iterating it would allow single characters as labels.
    return [allowed] if isinstance(allowed, str) else [str(lbl) for lbl in allowed or ()]


def _match_label(label: str, ctx: _Ctx, where: str) -> str:
    if not ctx.labels:
        return label
    norm = _norm_label(label)
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


# ---------------------------------------------------------------------------------------------- items


def _detection(item: Any, ctx: _Ctx, where: str) -> Detection | None:
    if not isinstance(item, dict):
        ctx.warn(f"{where}: skipped, expected an object but got {type(item).__name__}")
        return None
    norm, marker_groups = _take_markers(_norm_keys(item))
    label = _as_text(_pick(norm, _LABEL_KEYS))
    if not label:
        ctx.warn(f"{where}: skipped, no label")
        return None
    span = _span(norm, ctx, where)
    if span is None:
        return None
    pairs = _box_groups(_pick(norm, _BOX_KEYS)) + [(g, None) for g in marker_groups]
    boxes = [b for g, lbl in pairs if (b := ctx.box(g, where, lbl)) is not None]
    try:
        return Detection(
            label=_match_label(label, ctx, where),
            start_s=span[0],
            end_s=span[1],
            confidence=_confidence(_pick(norm, _CONF_KEYS), ctx, where),
            description=_as_text(_pick(norm, _DESC_KEYS)) or "",
            boxes=boxes,
        )
    except ValidationError as exc:
        ctx.warn(f"{where}: skipped, invalid ({exc.errors()[0]['msg']})")
        return None


def _segment(item: Any, ctx: _Ctx, where: str) -> Segment | None:
    if not isinstance(item, dict):
        ctx.warn(f"{where}: skipped, expected an object but got {type(item).__name__}")
        return None
    norm, marker_groups = _take_markers(_norm_keys(item))
    span = _span(norm, ctx, where)
    if span is None:
        return None
    ctx.unassigned.extend(b for g in marker_groups if (b := ctx.box(g, where)) is not None)
    title = _as_text(_pick(norm, _TITLE_KEYS)) or ""
    desc_keys = [k for k in _DESC_KEYS if k not in _TITLE_KEYS]
    try:
        return Segment(
            start_s=span[0], end_s=span[1], title=title, description=_as_text(_pick(norm, desc_keys)) or ""
        )
    except ValidationError as exc:
        ctx.warn(f"{where}: skipped, invalid ({exc.errors()[0]['msg']})")
        return None


def _find_items(value: Any, ctx: _Ctx, depth: int = 0) -> list[Any] | None:
    """The item list: a top-level list, a list under a wrapper key, or a single bare item."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict) or depth > 3:
        return None
    norm = _norm_keys(value)
    for key in _WRAPPER_KEYS:
        if (
            isinstance(norm.get(key), list | dict)
            and (found := _find_items(norm[key], ctx, depth + 1)) is not None
        ):
            return found
    if _pick(norm, (*_LABEL_KEYS, *_START_KEYS, *_RANGE_KEYS)) is not None:
        return [value]
    lists = [(k, v) for k, v in norm.items() if isinstance(v, list)]
    if len(lists) == 1:
        ctx.warn(f"items taken from unexpected key {lists[0][0]!r}")
        return lists[0][1]
    return None


def _clean_segments(segments: list[Segment], ctx: _Ctx) -> list[Segment]:
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


def _clean_answer(text: str, ctx: _Ctx) -> str:
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


def _outside_boxes(answer: str, found: _Found | None, ctx: _Ctx) -> list[Box]:
    groups = list(found.stray_boxes) if found else []
    for m in _BOX_RE.finditer(answer):
        if found is None or not found.start <= m.start() < found.end:
            groups.extend(_marker_groups(m.group(1)))
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
        norm = _norm_keys(value)
        for key in _CAPTION_KEYS:
            if key in norm and (text := _caption_text(norm[key], depth + 1)) is not None:
                return text
    return None


def _note_found(found: _Found, answer: str, ctx: _Ctx) -> None:
    for note in found.notes:
        ctx.warn(note)
    outside = len(answer[: found.start].strip()) + len(answer[found.end :].strip())
    if outside:
        ctx.warn(f"ignored {outside} characters of text around the JSON")


def _parse_caption(answer: str, ctx: _Ctx, notes: list[str]) -> tuple[Caption | None, str | None]:
    found = _extract_json(answer, lambda v: isinstance(v, dict) and _caption_text(v) is not None, notes)
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
    text = " ".join(_fix_surrogates(_BOX_RE.sub(" ", text)).split())
    if not text:
        return None, "empty caption"
    truncated = found is not None and found.truncated
    return Caption(text=text), "output was truncated; caption may be incomplete" if truncated else None


def _parse_items(answer: str, ctx: _Ctx, notes: list[str]) -> tuple[list[Any], bool, str | None]:
    """(items, ok, error) for the list tasks."""
    found = _extract_json(answer, _is_item_json, notes)
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


def _attach_unassigned(detections: list[Detection], ctx: _Ctx) -> list[Detection]:
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


def _parse(raw: str, task: Task, ctx: _Ctx) -> ParsedOutput:
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
        name = cast(Task, key)
        duration = float(clip_duration_s)
        ctx = _Ctx(
            task=name,
            duration=duration if math.isfinite(duration) and duration > 0 else None,
            width=int(width),
            height=int(height),
            labels={_norm_label(lbl): lbl for lbl in _as_labels(allowed_labels) if _norm_label(lbl)},
        )
        if ctx.duration is None:
            ctx.warn(f"clip_duration_s={clip_duration_s!r} is not a positive duration; times not clamped")
        return _parse(text, name, ctx)
    except Exception as exc:
        logger.debug("parse_output failed on %d chars of %s output", len(text), name, exc_info=True)
        return ParsedOutput(task=name, ok=False, raw=text, error=f"parser error: {exc!r:.200}")
