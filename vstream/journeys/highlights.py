"""Sports highlights: rank tracked events by interest and cut a reel from the original video.

Interest = confidence x the label's weight for the sport x a mild bonus for longer moments. The reel is
re-encoded (H.264) rather than stream-copied, so each cut starts exactly at its highlight's start instead
of at the previous keyframe and the reel's duration is exactly the sum of its highlights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from pydantic import BaseModel, ConfigDict

from vstream.analysis.records import Event
from vstream.media.frames import SourceError


class Highlight(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int
    event_id: str
    label: str
    start: float
    end: float
    score: float
    confidence: float
    description: str = ""


@dataclass(frozen=True)
class RankConfig:
    pre_roll_s: float = 2.0  # show the build-up
    post_roll_s: float = 3.0  # and the reaction
    min_length_s: float = 4.0
    default_weight: float = 0.3  # a label the sport's table does not know


def score(event: Event, weights: dict[str, float], cfg: RankConfig) -> float:
    weight = weights.get(event.label.lower(), cfg.default_weight)
    length_bonus = 1.0 + 0.1 * math.log1p(max(event.end - event.start, 0.0))
    return round(event.confidence * weight * length_bonus, 4)


def rank(
    events: Sequence[Event],
    weights: dict[str, float],
    *,
    k: int = 10,
    cfg: RankConfig | None = None,
    duration: float | None = None,
) -> list[Highlight]:
    """Top ``k`` highlights, best first; windows padded by pre/post roll and merged where they overlap."""
    cfg = cfg or RankConfig()
    scored = sorted(events, key=lambda e: (-score(e, weights, cfg), e.start))
    chosen: list[Highlight] = []
    for event in scored:
        start = max(0.0, event.start - cfg.pre_roll_s)
        end = max(event.end + cfg.post_roll_s, start + cfg.min_length_s)
        if duration is not None:
            end = min(end, duration)
        if any(start < h.end and end > h.start for h in chosen):
            continue  # the same moment is already in the list through a better-scored event
        chosen.append(
            Highlight(
                rank=len(chosen) + 1,
                event_id=event.event_id,
                label=event.label,
                start=round(start, 3),
                end=round(end, 3),
                score=score(event, weights, cfg),
                confidence=event.confidence,
                description=event.description,
            )
        )
        if len(chosen) == k:
            break
    return chosen


def export_reel(
    source: str | Path,
    highlights: Sequence[Highlight],
    out: str | Path,
    *,
    max_side: int = 1280,
    fps: float = 30.0,
) -> float:
    """Write the highlights, in time order, as one H.264 MP4; returns its duration in seconds."""
    spans = sorted((h.start, h.end) for h in highlights)
    if not spans:
        raise ValueError("no highlights to cut")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    try:
        with av.open(str(source)) as src, av.open(str(tmp), "w") as dst:
            written = _cut(src, dst, spans, max_side, fps)
        tmp.replace(out)
    except av.error.FFmpegError as exc:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"cannot cut a reel from {source}: {exc}") from exc
    return written


def _cut(
    src: av.container.InputContainer,
    dst: av.container.OutputContainer,
    spans: list[tuple[float, float]],
    max_side: int,
    fps: float,
) -> float:
    stream = src.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    scale = min(1.0, max_side / max(w, h))
    ow, oh = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    rate = Fraction(fps).limit_denominator(1001)
    out = dst.add_stream("libx264", rate=rate)
    out.width, out.height, out.pix_fmt = ow, oh, "yuv420p"
    out.options = {"preset": "veryfast", "crf": "23"}
    n = 0
    for start, end in spans:
        src.seek(int(max(0.0, start - 1.0) / (stream.time_base or Fraction(1, 90000))), stream=stream)
        next_t = start
        for frame in src.decode(stream):
            t = float(frame.time or 0.0)
            if t < next_t - 1e-6:
                continue
            if t >= end - 1e-6:
                break
            # Resample to the reel's constant rate so every cut contributes exactly its length.
            while next_t <= t + 1e-6 and next_t < end - 1e-6:
                img = frame.reformat(width=ow, height=oh, format="yuv420p")
                img.pts = n
                img.time_base = 1 / rate
                for packet in out.encode(img):
                    dst.mux(packet)
                n += 1
                next_t = start + (n - _frames_before(spans, start, fps)) / fps
    for packet in out.encode():
        dst.mux(packet)
    return n / fps


def _frames_before(spans: list[tuple[float, float]], start: float, fps: float) -> int:
    """Frames the reel holds before the span that begins at ``start``."""
    return sum(round((e - s) * fps) for s, e in spans if s < start)
