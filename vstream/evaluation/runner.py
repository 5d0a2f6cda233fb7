"""Run the pipeline over an evaluation dataset: for every video and task, ``vstream.analyze.analyze`` (the
same ingest, prompt, parse and tracking steps as the workers, in one process), and what it reported."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vstream.analysis.analyzer import Analysis
from vstream.analysis.records import Event, EventChange, SegmentRecord
from vstream.config import Settings
from vstream.evaluation.dataset import EvalItem
from vstream.evaluation.metrics import PredEvent
from vstream.evaluation.report import EvalReport, PredSegment, VideoRun, build_report
from vstream.media.frames import SourceError
from vstream.model.base import BackendError, ModelBackend
from vstream.schema import ClipParams, GateParams, IngestRequest
from vstream.vocabulary import Task

logger = logging.getLogger(__name__)

BackendFactory = Callable[[EvalItem], ModelBackend]


@dataclass(frozen=True)
class EvalOptions:
    tasks: tuple[Task, ...] = ()  # empty: every task the dataset has ground truth for
    preset: str | None = None
    sport: str = "soccer"
    event_types: tuple[str, ...] = ()  # empty: the preset's, else every label of the dataset
    params: ClipParams | None = None  # None: the preset's, else the settings' clip defaults
    gate: bool = False


@dataclass
class _Collect:
    """What one analyze run of one video reported, clip by clip."""

    clips: int = 0
    failed: int = 0
    parse_failures: int = 0
    model_seconds: float = 0.0
    end: float = 0.0
    opened_at: dict[str, float] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)
    prompt_hash: str = ""

    def on_clip(self, a: Analysis, changes: list[EventChange], segments: list[SegmentRecord]) -> None:
        self.clips += 1
        self.end = max(self.end, a.clip.t_end)
        if a.result is None:
            self.failed += 1
        else:
            self.model_seconds += a.result.model_seconds
            self.parse_failures += 0 if a.result.ok else 1
            self.prompt_hash = a.result.prompt_hash
        for ch in changes:
            if ch.kind == "open":
                self.opened_at.setdefault(ch.event.event_id, a.clip.t_end)
            self.events[ch.event.event_id] = ch.event


def tasks_for(items: Sequence[EvalItem], opts: EvalOptions) -> tuple[Task, ...]:
    if opts.tasks:
        return opts.tasks
    if opts.preset:
        from vstream.presets import preset

        return (preset(opts.preset, sport=opts.sport).task,)
    found: list[Task] = []
    if any(i.events for i in items):
        found.append("events")
    if any(i.segments for i in items):
        found.append("segments")
    if not found:
        raise ValueError("the dataset has neither events nor segments to score; pass --task")
    return tuple(found)


def stream_id_for(item: EvalItem) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", item.id).strip("-._")[:80]
    return cleaned or "eval-" + hashlib.sha256(item.id.encode()).hexdigest()[:8]


def request_for(
    item: EvalItem, task: Task, labels: Sequence[str], settings: Settings, opts: EvalOptions
) -> IngestRequest:
    from vstream.presets import preset

    p = preset(opts.preset, sport=opts.sport, event_types=opts.event_types) if opts.preset else None
    params = opts.params or (
        p.params if p else ClipParams(**settings.clips.model_dump(exclude={"jpeg_quality"}))
    )
    event_types = list(opts.event_types or (p.event_types if p else ()) or labels) if task == "events" else []
    stream_id = stream_id_for(item)
    return IngestRequest(
        job_id=f"eval-{stream_id}-{task}-{params.params_hash}",
        stream_id=stream_id,
        source=item.video,
        params=params,
        gate=GateParams(enabled=opts.gate or bool(p and p.gate.enabled)),
        task=task,
        event_types=event_types,
        preset=p.name if p else None,
        sport=opts.sport if p and p.name == "sports" else None,
    )


def _pred_events(c: _Collect) -> list[PredEvent]:
    return [
        PredEvent(
            label=e.label,
            start=e.start,
            end=e.end,
            confidence=e.confidence,
            opened_at=c.opened_at.get(k, e.end),
        )
        for k, e in c.events.items()
    ]


def run_video(
    item: EvalItem,
    tasks: Sequence[Task],
    labels: Sequence[str],
    settings: Settings,
    backend: ModelBackend,
    opts: EvalOptions,
) -> tuple[VideoRun, dict[str, str]]:
    """Analyse one video once per task; a video that cannot be read is reported, not raised."""
    from vstream.analyze import analyze

    total, hashes = _Collect(), dict[str, str]()
    events: list[PredEvent] = []
    segments: list[PredSegment] = []
    error = None
    for task in tasks:
        c = _Collect()
        try:
            summary = analyze(
                request_for(item, task, labels, settings, opts), settings, backend, on_clip=c.on_clip
            )
            error = error or summary.error
        except SourceError as exc:
            error = str(exc)
            continue
        hashes[task] = c.prompt_hash
        events += _pred_events(c)
        segments += [PredSegment(start=s.start, end=s.end, title=s.title) for s in summary.segments]
        for name in ("clips", "failed", "parse_failures", "model_seconds"):
            setattr(total, name, getattr(total, name) + getattr(c, name))
        total.end = max(total.end, c.end)
    if error:
        logger.warning("%s: %s", item.id, error)
    run = VideoRun(
        id=item.id,
        video=item.video,
        duration=item.duration if item.duration is not None else total.end,
        clips=total.clips,
        failed=total.failed,
        parse_failures=total.parse_failures,
        model_seconds=round(total.model_seconds, 6),
        gt_events=item.events,
        gt_segments=item.segments,
        events=sorted(events, key=lambda e: (e.start, e.label)),
        segments=sorted(segments, key=lambda s: s.start),
        error=error,
    )
    return run, hashes


def evaluate(
    items: Sequence[EvalItem],
    settings: Settings,
    backend_for: BackendFactory,
    opts: EvalOptions,
    *,
    dataset: str,
    model_id: str | None = None,
    on_video: Callable[[VideoRun], None] | None = None,
) -> EvalReport:
    """Every video through the pipeline, scored; ``model_id`` names the model in the report (default: the
    first backend's id)."""
    tasks = tasks_for(items, opts)
    labels = sorted({label for i in items for label in i.labels})
    if "events" in tasks and not (opts.event_types or opts.preset or labels):
        raise ValueError("task 'events' needs event types: the dataset has no event labels; pass --events")
    runs, hashes, first_id = [], {}, ""
    for item in items:
        try:
            backend = backend_for(item)  # the caller owns (and closes) the backends
            first_id = first_id or backend.model_id
            run, h = run_video(item, tasks, labels, settings, backend, opts)
        except BackendError as exc:
            raise ValueError(f"{item.id}: {exc}") from exc
        hashes.update(h)
        runs.append(run)
        if on_video:
            on_video(run)
    return build_report(
        runs,
        dataset=dataset,
        model_id=model_id or first_id,
        tasks=tasks,
        preset=opts.preset,
        thinking=settings.model.thinking,
        prompt_hashes=hashes,
    )
