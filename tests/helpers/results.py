"""Seeding results through the real write path (ResultStore.commit, as the infer worker writes them)."""

from __future__ import annotations

from collections.abc import Sequence

from vstream.analysis.analyzer import to_result
from vstream.analysis.records import EventChange
from vstream.analysis.results import Detection, ParsedOutput
from vstream.model.base import Generation, TaskSpec
from vstream.schema import ClipMessage, ClipParams, clip_id_for
from vstream.store import ResultStore

PARAMS = ClipParams(fps=2, clip_seconds=8, overlap_seconds=2)
WALL0 = 1_700_000_000.0
LABELS = ("person", "car", "dog")
CONFIDENCE = (0.3, 0.5, 0.7, 0.9)
Det = tuple[str, float, float, float]  # label, clip-relative start and end, confidence


def clip(stream_id: str, index: int, *, wall0: float | None = None, last: bool = False) -> ClipMessage:
    t0 = index * PARAMS.step_seconds
    ts = [t0 + k / PARAMS.fps for k in range(16)]
    return ClipMessage(
        stream_id=stream_id,
        clip_id=clip_id_for(stream_id, PARAMS, index),
        index=index,
        params=PARAMS,
        t_start=t0,
        t_end=t0 + PARAMS.clip_seconds,
        timestamps=ts,
        wall_timestamps=[wall0 + t for t in ts] if wall0 is not None else None,
        clock="pts",
        width=448,
        height=252,
        frames=[b"x"] * 16,
        last=last,
    )


def commit(
    store: ResultStore,
    stream_id: str,
    index: int,
    dets: Sequence[Det] = (),
    *,
    wall0: float | None = None,
    model: str = "glm",
    last: bool = False,
) -> list[EventChange]:
    """One clip's events result, written as the infer worker writes it."""
    c = clip(stream_id, index, wall0=wall0, last=last)
    parsed = ParsedOutput(
        task="events",
        ok=True,
        raw="[]",
        detections=[Detection(label=lb, start_s=s, end_s=e, confidence=cf) for lb, s, e, cf in dets],
    )
    task = TaskSpec(name="events", prompt="", prompt_hash="p1")
    result = to_result(c, task, Generation(text="[]"), parsed, model)
    return store.commit(result, c, parsed).changes


def ladder(
    store: ResultStore, stream_id: str, n: int, *, wall0: float | None = WALL0, first: int = 0
) -> None:
    """Clip i sees one short event: label LABELS[i % 3] at [6i + 1, 6i + 2], confidence CONFIDENCE[i % 4].
    Same labels are 18 s apart, so each is its own event; each closes when the next clip ends."""
    for i in range(first, first + n):
        commit(store, stream_id, i, [(LABELS[i % 3], 1.0, 2.0, CONFIDENCE[i % 4])], wall0=wall0)


def commit_other_task(store: ResultStore, stream_id: str, index: int, parsed: ParsedOutput) -> None:
    c = clip(stream_id, index)
    task = TaskSpec(name=parsed.task, prompt="", prompt_hash="p1")
    store.commit(to_result(c, task, Generation(text="x"), parsed, "glm"), c, parsed)
