"""Lecture summaries: chapters from the stitched segments, key points, and a whole-lecture summary built
hierarchically (map: one summary per chapter; reduce: summaries of summaries) with GLM-4.5V as a text model.

Partial results are normal: while a long lecture is still being processed the summary covers what has
been analysed so far and says so (``partial`` and ``covered_until``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, Field

from vstream.analysis.records import SegmentRecord
from vstream.model.base import ModelBackend
from vstream.vocabulary import Wire

logger = logging.getLogger(__name__)

MAP_PROMPT = (
    "These are notes on consecutive parts of a lecture, with their times in seconds.\n{notes}\n"
    "Summarise them in two sentences. Answer with the summary only."
)
REDUCE_PROMPT = (
    "These are summaries of consecutive parts of one lecture.\n{notes}\n"
    "Write one paragraph that summarises the whole. Answer with the summary only."
)


class Chapter(Wire):
    number: int
    title: str
    start: float
    end: float
    summary: str = ""


class KeyPoint(Wire):
    t: float = Field(description="Media seconds where the point is made.")
    text: str


_SUMMARY_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "stream_id": "physics-101",
    "chapters": [
        {
            "number": 1,
            "title": "Introduction",
            "start": 0.0,
            "end": 312.0,
            "summary": "The speaker introduces energy and why it is conserved.",
        }
    ],
    "key_points": [{"t": 0.0, "text": "Introduction"}, {"t": 95.0, "text": "Kinetic energy"}],
    "summary": "An introductory lecture on energy: kinetic and potential energy and their conservation.",
    "partial": False,
    "covered_until": 3120.0,
    "model_id": "zai-org/GLM-4.5V",
    "updated_at": 1795219890.4,
}


class LectureSummary(Wire):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    schema_version: int = 1
    stream_id: str
    chapters: list[Chapter]
    key_points: list[KeyPoint]
    summary: str
    partial: bool = Field(description="True while the lecture is still being analysed.")
    covered_until: float = Field(description="Media seconds analysed so far.")
    model_id: str = ""
    updated_at: float = Field(default_factory=time.time)


def _norm(title: str) -> str:
    return " ".join(title.lower().split())


def group_chapters(
    segments: Sequence[SegmentRecord], *, min_length_s: float = 60.0
) -> list[list[SegmentRecord]]:
    """Consecutive segments become chapters; one shorter than ``min_length_s`` joins the previous one."""
    groups: list[list[SegmentRecord]] = []
    for seg in sorted(segments, key=lambda s: s.start):
        if groups and (
            _norm(groups[-1][-1].title) == _norm(seg.title)
            or groups[-1][-1].end - groups[-1][0].start < min_length_s
        ):
            groups[-1].append(seg)
        else:
            groups.append([seg])
    return groups


def _clean(text: str) -> str:
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S).replace("<think>", "").replace("</think>", "")
    return " ".join(text.split())


def _notes(group: Sequence[SegmentRecord]) -> str:
    return "\n".join(f"- [{s.start:.0f}-{s.end:.0f}s] {s.title}: {s.description}".rstrip(": ") for s in group)


def _fallback(group: Sequence[SegmentRecord]) -> str:
    """Without a usable model answer the chapter still gets a faithful summary: its own notes."""
    return " ".join(s.description or s.title for s in group if (s.description or s.title))[:600]


def _generate(
    backend: ModelBackend, prompts: list[str], fallbacks: list[str], max_new_tokens: int
) -> list[str]:
    if not prompts:
        return []
    gens = backend.generate_text(prompts, max_new_tokens=max_new_tokens)
    return [
        (_clean(g.text) if g.error is None and _clean(g.text) else fb)
        for g, fb in zip(gens, fallbacks, strict=True)
    ]


def summarize(
    stream_id: str,
    segments: Sequence[SegmentRecord],
    backend: ModelBackend,
    *,
    partial: bool,
    fan_in: int = 6,
    max_new_tokens: int = 256,
    min_chapter_s: float = 60.0,
) -> LectureSummary:
    groups = group_chapters(segments, min_length_s=min_chapter_s)
    chapter_texts = _generate(
        backend,
        [MAP_PROMPT.format(notes=_notes(g)) for g in groups],
        [_fallback(g) for g in groups],
        max_new_tokens,
    )
    chapters = [
        Chapter(
            number=i + 1, title=g[0].title or f"Part {i + 1}", start=g[0].start, end=g[-1].end, summary=text
        )
        for i, (g, text) in enumerate(zip(groups, chapter_texts, strict=True))
    ]
    level = [c.summary for c in chapters]
    while len(level) > 1:  # reduce until one summary is left
        batches = [level[i : i + fan_in] for i in range(0, len(level), fan_in)]
        prompts = [REDUCE_PROMPT.format(notes="\n".join(f"- {t}" for t in b)) for b in batches]
        level = _generate(backend, prompts, [" ".join(b) for b in batches], max_new_tokens)
    key_points = [KeyPoint(t=s.start, text=s.title) for g in groups for s in g[:3] if s.title]
    return LectureSummary(
        stream_id=stream_id,
        chapters=chapters,
        key_points=_dedupe(key_points),
        summary=level[0] if level else "",
        partial=partial,
        covered_until=max((s.end for s in segments), default=0.0),
        model_id=backend.model_id,
    )


def _dedupe(points: list[KeyPoint]) -> list[KeyPoint]:
    seen: set[str] = set()
    out = []
    for p in points:
        if _norm(p.text) not in seen:
            seen.add(_norm(p.text))
            out.append(p)
    return out


def _clock(t: float) -> str:
    t = int(t)
    return f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}"


def to_markdown(s: LectureSummary) -> str:
    lines = [f"# Lecture {s.stream_id}", ""]
    if s.partial:
        lines += [f"*Partial: analysed up to {_clock(s.covered_until)}.*", ""]
    lines += ["## Summary", "", s.summary or "(no summary yet)", "", "## Chapters", ""]
    for c in s.chapters:
        lines += [f"### {c.number}. {c.title} ({_clock(c.start)}–{_clock(c.end)})", "", c.summary, ""]
    if s.key_points:
        lines += ["## Key points", ""] + [f"- {_clock(p.t)} {p.text}" for p in s.key_points] + [""]
    return "\n".join(lines)
