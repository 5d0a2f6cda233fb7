"""Repairing extraction of almost-JSON from raw model answers.

Finds the first useful JSON value in a text: the whole text when it is valid JSON, else a candidate
starting at an opening bracket, parsed by a tolerant, iterative parser that accepts single quotes,
trailing commas, Python literals, unquoted words, grounding box markers and truncation, and records
every repair it makes in ``Found.notes``. Work is bounded (nesting depth, candidates, tokens), so
hostile or garbage input costs neither stack nor unbounded time.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Real answers nest 3-4 levels; anything deeper is garbage and must not cost stack or time.
MAX_DEPTH = 64
# Bounds the work spent on hostile/garbage input: candidates tried and tokens scanned per call.
MAX_CANDIDATES = 24
MAX_TOKENS = 200_000

# GLM uses the box markers both for grounding coordinates and to highlight a final answer; only
# coordinate-like content (numbers, separators, any bracket style) is a box, other markers are dropped.
_BOX_BODY = r"[\s\d.,+\-\[\]()<>]{1,400}?"
BOX_RE = re.compile(rf"<\|begin_of_box\|>({_BOX_BODY})<\|end_of_box\|>")
_OPEN_RE = re.compile(r"[\[{]")
# Keep number patterns unambiguous (never "\d+\.?\d*"): that backtracks quadratically on long digit runs.
_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_INT_RE = re.compile(r"[-+]?\d{1,30}")
FLOAT_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
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


class _Stop(Exception):
    """Unexpected token: treat the input as ending here and repair like a truncation."""


class _Abort(Exception):
    """This candidate cannot be meaningful JSON (absurd nesting); try the next one."""


@dataclass
class Found:
    """A JSON value found in ``text[start:end]``, with the repairs made (``notes``) and stray box markers."""

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


def fix_surrogates(s: str) -> str:
    # Lone surrogates (from "\ud83d" escapes or garbage) would make the result unserialisable.
    if _SURROGATE_RE.search(s):
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return s


def _unescape(s: str) -> str:
    if "\\" not in s:
        return fix_surrogates(s)

    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        return chr(int(esc[1:], 16)) if len(esc) == 5 else _ESCAPES.get(esc, "\\" + esc)

    return fix_surrogates(_ESCAPE_RE.sub(sub, s))


def _bare_value(tok: str) -> Any:
    low = tok.lower()
    if low in _LITERALS:
        return _LITERALS[low]
    if _INT_RE.fullmatch(tok):
        return int(tok)
    if FLOAT_RE.fullmatch(tok):
        num = float(tok)
        return num if math.isfinite(num) else None
    return tok


def marker_groups(text: str) -> list[list[float]]:
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
        self.found = Found(None, start, start)
        self.partial: str | None = None  # unterminated string value at the end of input
        self.last_bare: _Frame | None = None  # frame whose last value was an undelimited bare token
        self.done = False

    def parse(self) -> Found:
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
        groups = marker_groups(tok)
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


def extract_json(text: str, useful: Callable[[Any], bool], notes: list[str]) -> Found | None:
    """First useful JSON value in ``text``: the whole text if it is valid JSON, else a repaired candidate."""
    lead = len(text) - len(text.lstrip())
    stripped = text.strip()
    try:
        return Found(json.loads(stripped), lead, lead + len(stripped), whole=True)
    except (ValueError, RecursionError):
        pass
    markers = [m.span() for m in BOX_RE.finditer(text)]
    marker_starts = [s for s, _ in markers]
    budget, tries, resume = [MAX_TOKENS], 0, 0
    fallback: Found | None = None
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
