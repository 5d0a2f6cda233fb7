"""Questions about a stream: GLM-4.5V as a text model over the stored captions, segments and events.

The records overlapping the asked range become one note per line (``[12.0-20.0s] event ...``). Notes that
fit one chunk (``AskSettings.chunk_chars``) get one prompt; more are answered chunk by chunk (map) and the
partial answers combined (reduce, ``fan_in`` at a time, repeatedly). The model answers JSON with the time
ranges it relies on; each cited range is checked against the stored records: a range that matches one is
kept, one that overlaps stored records is repaired to the best-overlapping one, and one that overlaps
nothing is dropped (models invent times). So every citation returned is a stored span. A range with no
records is answered without calling the model.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import redis
from pydantic import Field

from vstream.analysis.jsonrepair import extract_json
from vstream.analysis.records import CaptionRecord, Event, SegmentRecord
from vstream.config import AskSettings
from vstream.model.base import ModelBackend
from vstream.names import Keys
from vstream.vocabulary import Wire

logger = logging.getLogger(__name__)

Kind = Literal["caption", "segment", "event"]
_CAPTION_MAX_SPAN = 600.0  # a caption covers one clip, and clips are at most 600 s
_MATCH_TOLERANCE_S = 0.5  # a cited range this close to a stored one at both ends is that one

MAP_PROMPT = (
    "These are notes on a video, one per line, each with its time range in seconds:\n{notes}\n\n"
    "Question: {question}\n"
    "Answer from the notes only. Reply with JSON only: "
    '{{"found": true or false, "answer": "<one or two sentences>", "citations": [[<start>, <end>], ...]}} '
    "where citations are the time ranges of the notes your answer relies on, copied exactly. "
    'If the notes do not answer the question, reply {{"found": false, "answer": "", "citations": []}}.'
)
REDUCE_PROMPT = (
    "These are answers to one question, each from a different part of a video, with the time ranges they "
    "rely on:\n{notes}\n\nQuestion: {question}\n"
    "Combine them into one answer. Reply with JSON only: "
    '{{"found": true or false, "answer": "<one or two sentences>", "citations": [[<start>, <end>], ...]}} '
    "citing only time ranges listed above, copied exactly."
)


class StoredSpan(Wire):
    """One stored record the answer may cite."""

    kind: Kind
    ref: str = Field(description="Event id, segment id, or the caption's clip id.")
    start: float
    end: float
    text: str


class Citation(StoredSpan):
    repaired: bool = Field(False, description="The model cited a range that only overlapped this record.")


class AskAnswer(Wire):
    schema_version: Literal[1] = 1
    stream_id: str
    question: str
    start: float | None = Field(
        description="Start of the range asked about (media seconds); null: from the start."
    )
    end: float | None = Field(description="End of the range asked about; null: to the end.")
    answer: str
    found: bool = Field(description="Whether the stored records answer the question.")
    citations: list[Citation] = Field(description="Stored records the answer relies on, by start time.")
    no_data: bool = Field(description="Nothing is stored for the range: the model was not asked.")
    records: int = Field(description="Stored records in the range that the model read.")
    truncated: bool = Field(
        False, description="The range held more records than ask.max_records; the rest were not read."
    )
    chunks: int = Field(description="Map prompts: 1 when the records fit one prompt, more for map-reduce.")
    dropped_citations: int = Field(0, description="Cited ranges matching no stored record, removed.")
    thinking: bool
    model_id: str


class AskFailed(RuntimeError):
    """The model gave no usable answer to any prompt."""


# --- the stored records --------------------------------------------------------------------------------


def _window(
    client: redis.Redis,
    keys: Keys,
    stream_id: str,
    name: str,
    start: float | None,
    end: float | None,
    default_span: float,
) -> list[bytes]:
    span = client.zscore(keys.spans(stream_id), name)
    lo = "-inf" if start is None else start - (float(span) if span is not None else default_span)
    hi = "+inf" if end is None else end
    index = {"events": keys.events, "segments": keys.segments, "captions": keys.captions}[name](stream_id)
    return cast(list[bytes], client.zrangebyscore(index, lo, hi))


def load_spans(
    client: redis.Redis, keys: Keys, stream_id: str, start: float | None, end: float | None, limit: int
) -> tuple[list[StoredSpan], bool]:
    """Records overlapping ``[start, end]``, by start time, at most ``limit`` (and whether more were left)."""
    out: list[StoredSpan] = []
    ids = [m.decode() for m in _window(client, keys, stream_id, "events", start, end, _CAPTION_MAX_SPAN)]
    for raw in client.mget([keys.event(stream_id, i) for i in ids]) if ids else []:
        if raw:
            e = Event.model_validate_json(cast(bytes, raw))
            conf = f" (confidence {e.confidence:.2f})"
            out.append(
                StoredSpan(
                    kind="event",
                    ref=e.event_id,
                    start=e.start,
                    end=e.end,
                    text=f"event {e.label!r}{conf}: {e.description}".rstrip(": "),
                )
            )
    ids = [m.decode() for m in _window(client, keys, stream_id, "segments", start, end, _CAPTION_MAX_SPAN)]
    for raw in client.mget([keys.segment(stream_id, i) for i in ids]) if ids else []:
        if raw:
            s = SegmentRecord.model_validate_json(cast(bytes, raw))
            out.append(
                StoredSpan(
                    kind="segment",
                    ref=s.segment_id,
                    start=s.start,
                    end=s.end,
                    text=f"segment {s.title!r}: {s.description}".rstrip(": "),
                )
            )
    for raw in _window(client, keys, stream_id, "captions", start, end, _CAPTION_MAX_SPAN):
        c = CaptionRecord.model_validate_json(raw)
        out.append(
            StoredSpan(kind="caption", ref=c.clip_id, start=c.start, end=c.end, text=f"caption: {c.text}")
        )
    inside = [s for s in out if (start is None or s.end >= start) and (end is None or s.start <= end)]
    inside.sort(key=lambda s: (s.start, s.end, s.kind, s.ref))
    return inside[:limit], len(inside) > limit


# --- prompts and answers -------------------------------------------------------------------------------


def note(s: StoredSpan) -> str:
    return f"[{s.start:g}-{s.end:g}s] {' '.join(s.text.split())}"


def chunk(spans: Sequence[StoredSpan], budget_chars: int) -> list[list[StoredSpan]]:
    """Consecutive records in chunks whose notes fit ``budget_chars`` (a longer note is a chunk alone)."""
    chunks: list[list[StoredSpan]] = []
    size = 0
    for s in spans:
        n = len(note(s)) + 1
        if not chunks or size + n > budget_chars:
            chunks.append([])
            size = 0
        chunks[-1].append(s)
        size += n
    return chunks


class _Partial(Wire):
    found: bool
    answer: str
    cited: list[tuple[float, float]]


_THINK = re.compile(r"<think>.*?</think>", re.S)
_RANGE = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*s?\s*[-–,]\s*(\d+(?:\.\d+)?)\s*s?\s*\]")


def parse_answer(text: str) -> _Partial | None:
    """The model's JSON answer (repaired where needed); plain prose with ``[a-b]`` ranges is accepted too."""
    text = _THINK.sub("", text).replace("<think>", "").replace("</think>", "").strip()
    if not text:
        return None
    found = extract_json(text, lambda v: isinstance(v, dict) and "answer" in v, [])
    value: Any = found.value if found is not None else None
    if isinstance(value, dict) and isinstance(value.get("answer"), str):
        cited = [r for c in value.get("citations") or [] if (r := _as_range(c)) is not None]
        return _Partial(
            found=bool(value.get("found", bool(value["answer"]))), answer=value["answer"].strip(), cited=cited
        )
    cited = [(float(a), float(b)) for a, b in _RANGE.findall(text)]
    return _Partial(found=True, answer=" ".join(text.split()), cited=cited)


def _as_range(c: Any) -> tuple[float, float] | None:
    try:
        if isinstance(c, dict):
            a, b = float(c["start"]), float(c["end"])
        elif isinstance(c, list | tuple) and len(c) == 2:
            a, b = float(c[0]), float(c[1])
        elif isinstance(c, str) and (m := _RANGE.search(f"[{c.strip('[]')}]")):
            a, b = float(m.group(1)), float(m.group(2))
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return (min(a, b), max(a, b))


def validate(cited: Sequence[tuple[float, float]], spans: Sequence[StoredSpan]) -> tuple[list[Citation], int]:
    """Cited ranges as stored records: kept when one matches, repaired to the best overlap, else dropped."""
    out: dict[tuple[str, str], Citation] = {}
    dropped = 0
    for a, b in cited:
        exact = [
            s
            for s in spans
            if abs(s.start - a) <= _MATCH_TOLERANCE_S and abs(s.end - b) <= _MATCH_TOLERANCE_S
        ]
        if exact:
            for s in exact:
                out[(s.kind, s.ref)] = Citation(**s.model_dump())  # an exact citation beats a repaired one
            continue
        overlap = [(min(b, s.end) - max(a, s.start), s) for s in spans if min(b, s.end) >= max(a, s.start)]
        if not overlap:
            dropped += 1
            continue
        best = max(
            overlap, key=lambda o: (o[0] / max(max(b, o[1].end) - min(a, o[1].start), 1e-9), -o[1].start)
        )[1]
        out.setdefault((best.kind, best.ref), Citation(**best.model_dump(), repaired=True))
    return sorted(out.values(), key=lambda c: (c.start, c.end, c.kind, c.ref)), dropped


def _ask(
    backend: ModelBackend, prompts: list[str], cfg: AskSettings, thinking: bool
) -> list[_Partial | None]:
    gens = backend.generate_text(prompts, max_new_tokens=cfg.max_new_tokens, thinking=thinking)
    out = []
    for g in gens:
        if g.error is not None:
            logger.warning("ask: the model gave no answer: %s", g.error)
        out.append(parse_answer(g.text) if g.error is None else None)
    return out


def _reduce_notes(parts: Sequence[_Partial]) -> str:
    lines = []
    for p in parts:
        ranges = ", ".join(f"[{a:g}-{b:g}s]" for a, b in p.cited) or "none"
        lines.append(f"- {p.answer} (time ranges: {ranges})")
    return "\n".join(lines)


def _map_reduce(
    question: str, chunks: list[list[StoredSpan]], backend: ModelBackend, cfg: AskSettings, thinking: bool
) -> _Partial:
    answers = _ask(
        backend,
        [MAP_PROMPT.format(notes="\n".join(map(note, c)), question=question) for c in chunks],
        cfg,
        thinking,
    )
    if all(a is None for a in answers):
        raise AskFailed("the model gave no usable answer")
    level = [a for a in answers if a is not None and a.found and a.answer]
    if not level:
        return _Partial(found=False, answer="", cited=[])
    while len(level) > 1:
        batches = [level[i : i + cfg.fan_in] for i in range(0, len(level), cfg.fan_in)]
        prompts = [REDUCE_PROMPT.format(notes=_reduce_notes(b), question=question) for b in batches]
        reduced = _ask(backend, prompts, cfg, thinking)
        # a batch whose reduce failed keeps its partial answers' text and citations, so nothing is lost
        level = [
            r
            if r is not None and r.answer
            else _Partial(
                found=True, answer=" ".join(p.answer for p in b), cited=[c for p in b for c in p.cited]
            )
            for r, b in zip(reduced, batches, strict=True)
        ]
        # a reduced answer without valid ranges falls back to those of the answers it combined
        level = [
            r if r.cited else r.model_copy(update={"cited": [c for p in b for c in p.cited]})
            for r, b in zip(level, batches, strict=True)
        ]
    return level[0]


def answer_question(
    client: redis.Redis,
    keys: Keys,
    stream_id: str,
    question: str,
    backend: Callable[[], ModelBackend],
    cfg: AskSettings,
    *,
    start: float | None = None,
    end: float | None = None,
    thinking: bool = False,
) -> AskAnswer:
    spans, truncated = load_spans(client, keys, stream_id, start, end, cfg.max_records)
    base = {
        "stream_id": stream_id,
        "question": question,
        "start": start,
        "end": end,
        "thinking": thinking,
        "truncated": truncated,
    }
    if not spans:
        return _no_data(base, stream_id, start, end)
    chunks = chunk(spans, cfg.chunk_chars)
    model = backend()  # only now: a range without records needs no model
    final = _map_reduce(question, chunks, model, cfg, thinking)
    citations, dropped = validate(final.cited, spans)
    answer = (
        final.answer if final.found else (final.answer or "The stored records do not answer this question.")
    )
    return AskAnswer(
        **base,
        answer=answer,
        found=final.found and bool(final.answer),
        citations=citations,
        no_data=False,
        records=len(spans),
        chunks=len(chunks),
        dropped_citations=dropped,
        model_id=model.model_id,
    )


def _no_data(base: dict[str, Any], stream_id: str, start: float | None, end: float | None) -> AskAnswer:
    where = "" if start is None and end is None else f" between {_t(start, '0')} and {_t(end, 'the end')}"
    return AskAnswer(
        **base,
        answer=f"No captions, segments or events are stored for stream {stream_id!r}{where}.",
        found=False,
        citations=[],
        no_data=True,
        records=0,
        chunks=0,
        model_id="",
    )


def _t(v: float | None, default: str) -> str:
    return default if v is None else f"{v:g} s"


def to_text(a: AskAnswer) -> str:
    lines = [a.answer]
    for c in a.citations:
        lines.append(
            f"  [{c.start:g}-{c.end:g}s] {c.kind} {c.ref}{' (repaired)' if c.repaired else ''}: "
            + c.text[:100]
        )
    return "\n".join(lines)


def dumps(a: AskAnswer) -> str:
    return json.dumps(a.model_dump(mode="json"))
