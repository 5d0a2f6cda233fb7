"""Output of ``vstream analyze``: JSON lines or a readable log of clips and event changes."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from vstream.analysis.analyzer import Analysis
from vstream.analysis.records import EventChange, SegmentRecord
from vstream.config import Settings
from vstream.model.base import ModelBackend
from vstream.schema import IngestRequest

logger = logging.getLogger("vstream")
TINY_NOTE = (
    "model 'tiny' has random weights: its text is random and most answers will not parse. "
    "This run proves the pipeline, not the answers; use --model zai-org/GLM-4.5V (GPU) or openai:<url>."
)


def model_settings(settings: Settings, spec: str | None) -> Settings:
    if not spec:
        return settings
    if spec.startswith("openai:"):
        model = settings.model.model_copy(update={"type": "openai", "base_url": spec[len("openai:") :]})
    else:
        model = settings.model.model_copy(update={"type": "transformers", "model": spec})
    return settings.model_copy(update={"model": model})


def clip_record(a: Analysis) -> dict[str, object]:
    c = a.clip
    out: dict[str, object] = {
        "type": "clip",
        "clip_id": c.clip_id,
        "index": c.index,
        "t_start": c.t_start,
        "t_end": c.t_end,
        "n_frames": c.n_frames,
    }
    if a.result is None:
        out.update(ok=False, error=a.error)
        return out
    r = a.result
    out.update(
        ok=r.ok,
        error=r.error,
        model=r.model_id,
        prompt_hash=r.prompt_hash,
        thinking=r.thinking,
        observations=[o.model_dump() for o in r.observations],
        segments=[s.model_dump() for s in r.segments],
        caption=r.caption.text if r.caption else None,
        raw=r.raw,
        model_seconds=r.model_seconds,
        visual_tokens=r.visual_tokens,
    )
    return out


_TEXT_CHARS = 100
_SEGMENTS_SHOWN = 5


def _short(text: str, limit: int = _TEXT_CHARS) -> str:
    flat = " ".join(text.split())  # model text may hold newlines, which would break the one-line layout
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def result_lines(a: Analysis) -> list[str]:
    """The caption or segments of one clip for the readable output, each on one short line."""
    r = a.result
    if r is None:
        return []
    lines = [f"caption {_short(r.caption.text)!r}"] if r.caption else []
    for s in r.segments[:_SEGMENTS_SHOWN]:
        text = _short(f"{s.title}: {s.description}" if s.description else s.title)
        lines.append(f"segment {s.start:.1f}-{s.end:.1f}s {text!r}")
    if len(r.segments) > _SEGMENTS_SHOWN:
        lines.append(f"... and {len(r.segments) - _SEGMENTS_SHOWN} more segments (--json shows all)")
    return lines


def _print_summary(
    stream_id: str, segments: list[SegmentRecord], backend: ModelBackend, as_json: bool
) -> None:
    from vstream.journeys.lecture import summarize, to_markdown

    lecture = summarize(stream_id, segments, backend, partial=False)
    if as_json:
        print(json.dumps({"type": "summary", **lecture.model_dump(mode="json")}), flush=True)
    else:
        print(to_markdown(lecture), flush=True)


def run_analyze(args: argparse.Namespace, settings: Settings, req: IngestRequest) -> int:
    """Exit 0 when every clip got an answer (parseable or not), 1 when some got none, 2 on a job error."""
    from vstream.model.factory import make_backend

    settings = model_settings(settings, args.model)
    if args.thinking:
        settings = settings.model_copy(update={"model": settings.model.model_copy(update={"thinking": True})})
    if settings.model.type == "transformers" and settings.model.model == "tiny":
        print(f"note: {TINY_NOTE}", file=sys.stderr)
    backend = make_backend(settings.model)
    try:
        return _analyze_with(args, settings, req, backend)
    finally:
        backend.close()


def _analyze_with(
    args: argparse.Namespace, settings: Settings, req: IngestRequest, backend: ModelBackend
) -> int:
    from tqdm import tqdm

    from vstream.analyze import analyze

    unanswered: list[str] = []  # why each clip without any answer got none, in clip order

    def on_clip(a: Analysis, changes: list[EventChange], segments: list[SegmentRecord]) -> None:
        if a.result is None:
            unanswered.append(a.error or "no result")
        _print_clip(a, changes, args.json)

    with tqdm(unit="s", file=sys.stderr, disable=None, desc=req.stream_id, leave=False) as bar:
        summary = analyze(
            req, settings, backend, on_clip=on_clip, on_progress=lambda t: bar.update(round(t, 1) - bar.n)
        )
    if req.task == "segments" and summary.segments:
        _print_summary(req.stream_id, summary.segments, backend, args.json)
    logger.info(
        "%s: %d clips, %d without a result, %d unparseable answers, events opened %s",
        req.stream_id,
        summary.clips,
        summary.failed,
        summary.parse_failures,
        summary.events or "none",
    )
    return _exit_code(summary.error, unanswered, summary.clips)


def _print_clip(a: Analysis, changes: list[EventChange], as_json: bool) -> None:
    if as_json:
        print(json.dumps(clip_record(a)), flush=True)
        for ch in changes:
            print(
                json.dumps({"type": "event", "kind": ch.kind, **ch.event.model_dump(mode="json")}),
                flush=True,
            )
        return
    status = "ok" if a.result and a.result.ok else f"failed: {(a.result.error if a.result else a.error)}"
    print(f"{a.clip.clip_id} {a.clip.t_start:8.2f}-{a.clip.t_end:8.2f}s {status}", flush=True)
    for line in result_lines(a):
        print(f"  {line}", flush=True)
    for ch in changes:
        print(
            f"  event {ch.kind:6} {ch.event.label!r} {ch.event.start:.1f}-{ch.event.end:.1f}s "
            f"conf {ch.event.confidence:.2f}",
            flush=True,
        )


def _exit_code(error: str | None, unanswered: list[str], clips: int) -> int:
    """2: the run itself failed; 1: some clip got no answer at all; 0 otherwise."""
    if error:
        print(f"vstream: error: {error}", file=sys.stderr)
        return 2
    if unanswered:
        # An unparseable answer is still an answer (the tiny model's usual case); no answer at all is not.
        first = " ".join(unanswered[0].split())
        print(
            f"vstream: error: {len(unanswered)} of {clips} clips got no answer from the model "
            f"(first: {first})",
            file=sys.stderr,
        )
        return 1
    return 0
