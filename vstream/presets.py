"""Task presets: each user journey is one parameter (``--preset surveillance|sports|lecture``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vstream.schema import ClipParams, GateParams
from vstream.vocabulary import Task

PresetName = Literal["surveillance", "sports", "lecture"]

SPORT_EVENTS: dict[str, dict[str, float]] = {
    # label -> interest weight of a highlight of that kind
    "soccer": {"goal": 1.0, "shot on goal": 0.7, "save": 0.6, "celebration": 0.5, "foul": 0.4, "replay": 0.2},
    "basketball": {
        "dunk": 1.0,
        "three-pointer": 0.8,
        "block": 0.7,
        "celebration": 0.5,
        "foul": 0.4,
        "replay": 0.2,
    },
    "tennis": {"ace": 0.9, "winner": 1.0, "long rally": 0.7, "celebration": 0.5, "replay": 0.2},
}


@dataclass(frozen=True)
class Preset:
    name: PresetName
    task: Task
    event_types: tuple[str, ...]
    params: ClipParams
    gate: GateParams
    description: str
    weights: dict[str, float] = field(default_factory=dict)


def preset(name: str, *, sport: str = "soccer", event_types: tuple[str, ...] = ()) -> Preset:
    """The preset ``name``; ``event_types`` replaces the preset's default labels where given."""
    if name == "surveillance":
        labels = event_types or (
            "person enters restricted area",
            "vehicle stops in bay",
            "person falls",
            "fire or smoke",
        )
        return Preset(
            "surveillance",
            "events",
            labels,
            ClipParams(fps=1, clip_seconds=8, overlap_seconds=2),
            GateParams(enabled=True),
            "alerts for camera feeds: events with hysteresis, motion gate",
        )
    if name == "sports":
        if sport not in SPORT_EVENTS:
            raise ValueError(f"unknown sport {sport!r}: choose one of {', '.join(SPORT_EVENTS)}")
        weights = dict(SPORT_EVENTS[sport])
        labels = event_types or tuple(weights)
        return Preset(
            "sports",
            "events",
            labels,
            ClipParams(fps=2, clip_seconds=8, overlap_seconds=2),
            GateParams(enabled=False),
            f"{sport} highlight candidates, ranked by interest",
            weights,
        )
    if name == "lecture":
        return Preset(
            "lecture",
            "segments",
            (),
            ClipParams(fps=1, clip_seconds=30, overlap_seconds=4),
            GateParams(enabled=False),
            "chapters, key points and a hierarchical summary",
        )
    raise ValueError(f"unknown preset {name!r}: choose surveillance, sports or lecture")
