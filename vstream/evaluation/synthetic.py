"""``vstream eval make-synthetic DIR``: a small labelled set to try the evaluation on without footage.

It writes synthetic videos (``vstream.media.synth``), their ground truth (``dataset.jsonl``) and, for every
video, a script for the ``scripted`` backend that plays a detector with realistic faults, so the metrics
are not trivially 1.0: boundaries a little off, a late alert, an event split in two, a miss, a false alarm
and one unparseable answer. The scripts answer per clip and assume the clip step of the default clip
parameters (8 s clips, 2 s overlap), which the surveillance preset shares. Scripted answers prove the
evaluation's plumbing and arithmetic, not a model's quality.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from vstream.media.synth import make_sample_video

CLIP_SECONDS, OVERLAP = 8.0, 2.0
STEP = CLIP_SECONDS - OVERLAP
GARBAGE = "The camera shows a quiet street; nothing much is happening."
Span = tuple[str, float, float]


@dataclass(frozen=True)
class SyntheticVideo:
    id: str
    seconds: float
    events: tuple[Span, ...]  # ground truth (label, start, end)
    detections: tuple[tuple[str, float, float, float], ...]  # what the "detector" reports, with confidence
    segments: tuple[Span, ...]  # ground-truth segments (title, start, end)
    predicted_segments: tuple[Span, ...]
    garbage_event_clips: tuple[int, ...] = ()  # clips whose events answer does not parse


VIDEOS: tuple[SyntheticVideo, ...] = (
    SyntheticVideo(
        "syn-01",
        36.0,
        events=(("person falls", 4.0, 9.0), ("vehicle stops in bay", 18.0, 30.0)),
        # boundaries half a second late; the stop is only seen from 23 s on: a late alert
        detections=(("person falls", 4.5, 9.5, 0.9), ("vehicle stops in bay", 23.0, 30.0, 0.7)),
        segments=(("empty bay", 0.0, 18.0), ("vehicle in bay", 18.0, 36.0)),
        predicted_segments=(("empty bay", 0.0, 20.0), ("vehicle in bay", 20.0, 36.0)),
    ),
    SyntheticVideo(
        "syn-02",
        36.0,
        events=(("person enters restricted area", 2.0, 30.0), ("person falls", 31.0, 34.0)),
        # the long intrusion is reported as two events (a 10 s gap: longer than the tracker's join gap);
        # the fall is missed
        detections=(
            ("person enters restricted area", 2.0, 9.0, 0.8),
            ("person enters restricted area", 19.0, 30.0, 0.85),
        ),
        segments=(("intruder", 0.0, 30.0), ("empty yard", 30.0, 36.0)),
        predicted_segments=(("intruder", 0.0, 27.0), ("empty yard", 27.0, 36.0)),
    ),
    SyntheticVideo(
        "syn-03",
        36.0,
        events=(("vehicle stops in bay", 10.0, 18.0),),
        # a false alarm at 28 s, and the first clip's answer is prose instead of JSON
        detections=(("vehicle stops in bay", 11.0, 18.0, 0.9), ("person falls", 28.0, 31.0, 0.6)),
        segments=(("empty bay", 0.0, 10.0), ("vehicle in bay", 10.0, 18.0), ("empty bay again", 18.0, 36.0)),
        predicted_segments=(
            ("empty bay", 0.0, 11.0),
            ("vehicle in bay", 11.0, 18.0),
            ("empty bay again", 18.0, 36.0),
        ),
        garbage_event_clips=(0,),
    ),
)


def _windows(seconds: float) -> list[tuple[float, float]]:
    n = max(1, math.ceil((seconds - CLIP_SECONDS) / STEP) + 1) + 1  # one spare: harmless if unused
    return [(k * STEP, k * STEP + CLIP_SECONDS) for k in range(n)]


def _rel(start: float, end: float, window: tuple[float, float]) -> tuple[float, float] | None:
    a, b = max(start, window[0]), min(end, window[1])
    return (round(a - window[0], 3), round(b - window[0], 3)) if b > a else None


def script_for(v: SyntheticVideo) -> dict[str, object]:
    """The scripted backend's answers for every clip of ``v`` (clip-relative times, as GLM would answer)."""
    events, segments = [], []
    for k, w in enumerate(_windows(v.seconds)):
        found = []
        for label, s, e, conf in v.detections:
            if (rel := _rel(s, e, w)) is not None:
                found.append(
                    {
                        "label": label,
                        "start": rel[0],
                        "end": rel[1],
                        "confidence": conf,
                        "description": f"{label} seen",
                        "box": None,
                    }
                )
        events.append(GARBAGE if k in v.garbage_event_clips else json.dumps(found))
        segs = [
            {"start": rel[0], "end": rel[1], "title": title, "description": f"{title} ({v.id})"}
            for title, s, e in v.predicted_segments
            if (rel := _rel(s, e, w)) is not None
        ]
        segments.append(json.dumps(segs))
    return {"delay_s": 0.02, "outputs": {"events": events, "segments": segments}}


def make_synthetic(out: str | Path, *, width: int = 320, height: int = 180, fps: float = 10.0) -> Path:
    """Write the set under ``out``; returns the dataset file."""
    out = Path(out)
    (out / "scripts").mkdir(parents=True, exist_ok=True)
    rows = []
    for v in VIDEOS:
        video = make_sample_video(
            out / "videos" / f"{v.id}.mp4", seconds=v.seconds, fps=fps, width=width, height=height
        )
        (out / "scripts" / f"{v.id}.json").write_text(json.dumps(script_for(v), indent=1))
        rows.append(
            {
                "id": v.id,
                "video": str(video.relative_to(out)),
                "duration": v.seconds,
                "events": [{"label": label, "start": s, "end": e} for label, s, e in v.events],
                "segments": [{"title": t, "start": s, "end": e} for t, s, e in v.segments],
            }
        )
    dataset = out / "dataset.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dataset
