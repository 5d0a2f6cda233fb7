"""Evaluation datasets: ground truth for videos, read from vstream's JSONL or two public annotation styles.

* **JSONL** (vstream's own): one video per line, ``{"video": "clips/a.mp4", "id": "a", "duration": 30,
  "events": [{"label": "person falls", "start": 3.0, "end": 6.5}], "segments": [{"start": 0, "end": 12,
  "title": "intro"}], "captions": [{"start": 0, "end": 8, "text": "..."}]}``. ``video`` is a path
  (relative to the JSONL file) or a URL; ``id`` defaults to the file name's stem.
* **ActivityNet Captions** (JSON ``{video_id: {"duration", "timestamps": [[s, e], ...], "sentences"}}``):
  each sentence is a ground-truth segment (its title) and caption; there are no event labels.
* **Charades-STA** (lines ``vid start end##sentence``): each sentence is a query, i.e. an event type, and
  its span the ground-truth event; several lines of one video are one item.

For the two public styles the videos are ``<video_root>/<id><video_ext>`` (the annotation files name ids,
not files).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

Format = Literal["auto", "jsonl", "activitynet", "charades"]


class DatasetError(ValueError):
    """An annotation file that cannot be read; the message names the file and line."""


class _Span(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float = Field(ge=0)
    end: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


class GtEvent(_Span):
    label: str = Field(min_length=1)


class GtSegment(_Span):
    title: str = ""


class GtCaption(_Span):
    text: str = ""


class EvalItem(BaseModel):
    """One video and its ground truth (times in media seconds from the start of the video)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    video: str = Field(min_length=1)
    duration: float | None = Field(None, ge=0)
    events: list[GtEvent] = Field(default_factory=list)
    segments: list[GtSegment] = Field(default_factory=list)
    captions: list[GtCaption] = Field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted({e.label for e in self.events})


def load_dataset(
    path: str | Path, *, fmt: Format = "auto", video_root: str | Path | None = None, video_ext: str = ".mp4"
) -> list[EvalItem]:
    """Read ``path`` in ``fmt`` (``auto``: by content); raises DatasetError naming the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc}") from exc
    fmt = _sniff(text) if fmt == "auto" else fmt
    root = Path(video_root) if video_root is not None else path.parent
    if fmt == "jsonl":
        items = read_jsonl(text, path)
    elif fmt == "activitynet":
        items = read_activitynet(text, path, root, video_ext)
    else:
        items = read_charades(text, path, root, video_ext)
    if not items:
        raise DatasetError(f"dataset {path} holds no videos")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DatasetError(f"dataset {path}: video ids appear twice: {', '.join(dup[:5])}")
    return items


def _sniff(text: str) -> Format:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "##" in first and not first.startswith("{"):
        return "charades"
    try:
        whole = json.loads(text)
    except ValueError:
        return "jsonl"  # several JSON objects, one a line
    if isinstance(whole, dict) and "video" not in whole:
        return "activitynet"
    return "jsonl"


def _resolve(video: str, base: Path) -> str:
    if "://" in video or Path(video).is_absolute():
        return video
    return str(base / video)


def read_jsonl(text: str, path: Path) -> list[EvalItem]:
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("video"), str):
                raise ValueError('each line must be an object with a "video" path or URL')
            row.setdefault("id", Path(row["video"].split("?")[0]).stem)
            row["video"] = _resolve(row["video"], path.parent)
            items.append(EvalItem.model_validate(row))
        except (ValueError, ValidationError) as exc:
            raise DatasetError(f"{path}:{n}: {_first_line(exc)}") from exc
    return items


def read_activitynet(text: str, path: Path, root: Path, ext: str) -> list[EvalItem]:
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected an object {video_id: {duration, timestamps, sentences}}")
        items = []
        for vid, ann in data.items():
            spans, sentences = ann.get("timestamps", []), ann.get("sentences", [])
            if len(spans) != len(sentences):
                raise ValueError(f"{vid}: {len(spans)} timestamps but {len(sentences)} sentences")
            duration = float(ann["duration"]) if ann.get("duration") is not None else None
            # ActivityNet stamps sometimes run past the duration or come reversed; clamp and order them
            pairs = [_ordered(float(s), float(e), duration) for s, e in spans]
            items.append(
                EvalItem(
                    id=vid,
                    video=str(root / f"{vid}{ext}"),
                    duration=duration,
                    segments=[
                        GtSegment(start=s, end=e, title=t.strip())
                        for (s, e), t in zip(pairs, sentences, strict=True)
                    ],
                    captions=[
                        GtCaption(start=s, end=e, text=t.strip())
                        for (s, e), t in zip(pairs, sentences, strict=True)
                    ],
                )
            )
    except (ValueError, TypeError, KeyError, AttributeError, ValidationError) as exc:
        raise DatasetError(f"{path}: not ActivityNet Captions JSON: {_first_line(exc)}") from exc
    return items


def read_charades(text: str, path: Path, root: Path, ext: str) -> list[EvalItem]:
    events: dict[str, list[GtEvent]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        parts = head.split()
        try:
            if not sep or len(parts) != 3 or not sentence.strip():
                raise ValueError("expected 'video_id start end##sentence'")
            s, e = _ordered(float(parts[1]), float(parts[2]), None)
            events.setdefault(parts[0], []).append(
                GtEvent(label=sentence.strip().rstrip("."), start=s, end=e)
            )
        except (ValueError, ValidationError) as exc:
            raise DatasetError(f"{path}:{n}: {_first_line(exc)}") from exc
    return [EvalItem(id=vid, video=str(root / f"{vid}{ext}"), events=ev) for vid, ev in events.items()]


def _ordered(start: float, end: float, duration: float | None) -> tuple[float, float]:
    start, end = sorted((max(start, 0.0), max(end, 0.0)))
    if duration is not None:
        start, end = min(start, duration), min(end, duration)
    return start, end


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        return f"{where}: {e['msg']}" if where else e["msg"]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
