"""An evaluation run's report: metrics over every video, as JSON, a terminal table, and a comparison of two
runs (e.g. two prompt versions)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vstream.evaluation.dataset import DatasetError, GtEvent, GtSegment
from vstream.evaluation.metrics import (
    IOU_THRESHOLDS,
    Counts,
    PredEvent,
    Summary,
    alert_latencies,
    boundary_errors,
    label_counts,
    segment_tious,
    summarize,
)

ALL = "(all)"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PredSegment(_Out):
    start: float
    end: float
    title: str = ""


class VideoRun(_Out):
    """What the pipeline produced for one video, next to its ground truth."""

    id: str
    video: str
    duration: float
    clips: int = 0
    failed: int = Field(0, description="Clips without a model result (backend errors).")
    parse_failures: int = 0
    model_seconds: float = 0.0
    gt_events: list[GtEvent] = Field(default_factory=list)
    gt_segments: list[GtSegment] = Field(default_factory=list)
    events: list[PredEvent] = Field(default_factory=list)
    segments: list[PredSegment] = Field(default_factory=list)
    error: str | None = None


class LabelScore(_Out):
    label: str = Field(description=f"An event label, or {ALL!r}: counts summed over labels (micro average).")
    iou: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


class EvalReport(_Out):
    schema_version: Literal[1] = 1
    dataset: str
    model_id: str
    tasks: list[str]
    preset: str | None = None
    thinking: bool = False
    prompt_hashes: dict[str, str] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    videos: int
    video_seconds: float
    clips: int
    parse_failures: int
    parse_failure_rate: float = Field(description="Unparseable answers / clips analysed.")
    model_seconds: float
    model_seconds_per_video_minute: float
    ious: list[float]
    scores: list[LabelScore]
    macro_f1: dict[str, float] = Field(description="Mean per-label F1, keyed by IoU threshold.")
    start_error_s: Summary
    end_error_s: Summary
    segment_tiou: Summary
    alert_latency_s: Summary
    alerts_missed: int = Field(description="Ground-truth events with no overlapping alert of their label.")
    runs: list[VideoRun]


def _scores(runs: Sequence[VideoRun], ious: Sequence[float]) -> tuple[list[LabelScore], dict[str, float]]:
    scores, macro = [], {}
    for iou in ious:
        totals: dict[str, Counts] = {}
        for run in runs:
            for label, c in label_counts(run.gt_events, run.events, iou).items():
                totals[label] = totals.get(label, Counts()) + c
        overall = sum(totals.values(), Counts())
        for label, c in [*sorted(totals.items()), (ALL, overall)]:
            scores.append(
                LabelScore(
                    label=label,
                    iou=iou,
                    tp=c.tp,
                    fp=c.fp,
                    fn=c.fn,
                    precision=round(c.precision, 6),
                    recall=round(c.recall, 6),
                    f1=round(c.f1, 6),
                )
            )
        f1s = [c.f1 for c in totals.values()]
        macro[f"{iou:g}"] = round(sum(f1s) / len(f1s), 6) if f1s else 0.0
    return scores, macro


def build_report(
    runs: Sequence[VideoRun],
    *,
    dataset: str,
    model_id: str,
    tasks: Sequence[str],
    preset: str | None = None,
    thinking: bool = False,
    prompt_hashes: dict[str, str] | None = None,
    ious: Sequence[float] = IOU_THRESHOLDS,
) -> EvalReport:
    scores, macro = _scores(runs, ious)
    errors = [e for r in runs for e in boundary_errors(r.gt_events, r.events)]
    latencies = [x for r in runs for x in alert_latencies(r.gt_events, r.events)]
    clips = sum(r.clips for r in runs)
    failures = sum(r.parse_failures for r in runs)
    seconds = sum(r.duration for r in runs)
    model_seconds = sum(r.model_seconds for r in runs)
    return EvalReport(
        dataset=dataset,
        model_id=model_id,
        tasks=list(tasks),
        preset=preset,
        thinking=thinking,
        prompt_hashes=prompt_hashes or {},
        videos=len(runs),
        video_seconds=round(seconds, 3),
        clips=clips,
        parse_failures=failures,
        parse_failure_rate=round(failures / clips, 6) if clips else 0.0,
        model_seconds=round(model_seconds, 6),
        model_seconds_per_video_minute=round(model_seconds / (seconds / 60), 6) if seconds else 0.0,
        ious=list(ious),
        scores=scores,
        macro_f1=macro,
        start_error_s=summarize([s for s, _ in errors]),
        end_error_s=summarize([e for _, e in errors]),
        segment_tiou=summarize(
            [t for r in runs if r.gt_segments for t in segment_tious(r.gt_segments, r.segments)]
        ),
        alert_latency_s=summarize([x for x in latencies if x is not None]),
        alerts_missed=sum(1 for x in latencies if x is None),
        runs=list(runs),
    )


def load_report(path: str | Path) -> EvalReport:
    try:
        return EvalReport.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"{path} is not a vstream eval report (--json output): {first}") from exc


def _num(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _summary_line(name: str, s: Summary, unit: str) -> str:
    if not s.n:
        return f"{name:<22} -"
    stats = f"mean {_num(s.mean)}{unit}  median {_num(s.median)}{unit}  max {_num(s.max)}{unit}"
    return f"{name:<22} {stats}  (n={s.n})"


def format_table(r: EvalReport) -> str:
    lines = [
        f"dataset {r.dataset}: {r.videos} videos, {r.video_seconds:.1f} s, {r.clips} clips; "
        f"model {r.model_id}"
        + (f", preset {r.preset}" if r.preset else "")
        + (", thinking" if r.thinking else ""),
        "",
        f"{'label':<34} {'IoU':>4} {'TP':>4} {'FP':>4} {'FN':>4} {'P':>6} {'R':>6} {'F1':>6}",
    ]
    for s in r.scores:
        lines.append(
            f"{s.label[:34]:<34} {s.iou:>4g} {s.tp:>4} {s.fp:>4} {s.fn:>4} "
            f"{s.precision:>6.3f} {s.recall:>6.3f} {s.f1:>6.3f}"
        )
    lines += [
        "",
        "macro F1               " + "  ".join(f"@{k} {v:.3f}" for k, v in r.macro_f1.items()),
        _summary_line("start error (IoU 0.5)", r.start_error_s, " s"),
        _summary_line("end error (IoU 0.5)", r.end_error_s, " s"),
        _summary_line("alert latency", r.alert_latency_s, " s") + f"  missed {r.alerts_missed}",
        _summary_line("segment tIoU", r.segment_tiou, ""),
        f"{'parse failures':<22} {r.parse_failures}/{r.clips} ({r.parse_failure_rate:.1%})",
        f"{'model s / video min':<22} {r.model_seconds_per_video_minute:.3f}",
    ]
    # a video that could not be read still counts (its events are misses); say which and why
    lines += [f"error: {run.id}: {run.error}" for run in r.runs if run.error]
    return "\n".join(lines)


def _headline(r: EvalReport) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for s in r.scores:
        if s.label == ALL:
            out[f"F1 @{s.iou:g} (all)"] = s.f1
    for k, v in r.macro_f1.items():
        out[f"macro F1 @{k}"] = v
    out["start error s"] = r.start_error_s.mean
    out["end error s"] = r.end_error_s.mean
    out["alert latency s"] = r.alert_latency_s.mean
    out["alerts missed"] = float(r.alerts_missed)
    out["segment tIoU"] = r.segment_tiou.mean
    out["parse failure rate"] = r.parse_failure_rate
    out["model s / video min"] = r.model_seconds_per_video_minute
    return out


def compare(a: EvalReport, b: EvalReport) -> dict[str, dict[str, float | None]]:
    """Headline metrics of two runs and their difference (B - A)."""
    ha, hb = _headline(a), _headline(b)
    out = {}
    for k in dict.fromkeys([*ha, *hb]):
        va, vb = ha.get(k), hb.get(k)
        out[k] = {"a": va, "b": vb, "delta": None if va is None or vb is None else round(vb - va, 6)}
    return out


def format_compare(a: EvalReport, b: EvalReport, name_a: str, name_b: str) -> str:
    lines = [
        f"A = {name_a} ({a.model_id}, {a.videos} videos)",
        f"B = {name_b} ({b.model_id}, {b.videos} videos)",
    ]
    if a.dataset != b.dataset:
        lines.append(f"note: different datasets ({a.dataset} vs {b.dataset})")
    lines += ["", f"{'metric':<24} {'A':>9} {'B':>9} {'B - A':>9}"]
    for k, v in compare(a, b).items():
        lines.append(
            f"{k:<24} {_num(v['a'], '.3f'):>9} {_num(v['b'], '.3f'):>9} {_num(v['delta'], '+.3f'):>9}"
        )
    return "\n".join(lines)


def dump(r: EvalReport) -> str:
    return json.dumps(r.model_dump(mode="json"), indent=1)
