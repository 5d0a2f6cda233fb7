"""``vstream eval``: score a backend and preset on a labelled dataset; ``eval make-synthetic`` writes one;
``eval --compare A.json B.json`` compares two runs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from vstream.config import Settings
from vstream.evaluation.dataset import EvalItem
from vstream.model.base import ModelBackend

logger = logging.getLogger(__name__)
VIDEO_ID = "{video_id}"


def add_eval_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "eval",
        help="score a backend and preset on a labelled dataset (or: eval make-synthetic DIR)",
        description="vstream eval DATASET [options] | vstream eval make-synthetic DIR | "
        "vstream eval --compare A.json B.json",
    )
    p.add_argument("dataset", nargs="?", help="JSONL, ActivityNet Captions JSON or Charades-STA lines")
    p.add_argument("dir", nargs="?", help=argparse.SUPPRESS)  # the DIR of `eval make-synthetic DIR`
    p.add_argument("--format", choices=["auto", "jsonl", "activitynet", "charades"], default="auto")
    p.add_argument("--video-root", default=None, help="where the videos of ActivityNet/Charades ids are")
    p.add_argument("--video-ext", default=".mp4", help="file extension of those videos (default .mp4)")
    p.add_argument(
        "--model",
        default=None,
        help="tiny, a hub id or local dir, openai:<url>, or scripted:<script.json> (a path holding "
        "{video_id} gives each video its own script)",
    )
    p.add_argument("--preset", choices=["surveillance", "sports", "lecture"], default=None)
    p.add_argument("--sport", default="soccer", help="with --preset sports")
    p.add_argument(
        "--task",
        action="append",
        choices=["events", "segments"],
        default=None,
        help="task to run (repeatable; default: every task the dataset has ground truth for)",
    )
    p.add_argument(
        "--events", default=None, help="comma-separated event types (default: the dataset's labels)"
    )
    p.add_argument("--fps", type=float, default=None)
    p.add_argument("--clip-seconds", type=float, default=None)
    p.add_argument("--overlap", type=float, default=None)
    p.add_argument("--thinking", action="store_true", help="turn GLM's thinking mode on")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    p.add_argument("--plot", default=None, help="write the PNG plot here")
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.json", "B.json"),
        default=None,
        help="compare two reports written by --out",
    )


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from vstream.evaluation import report as rep

    if args.compare:
        a, b = (rep.load_report(p) for p in args.compare)
        print(rep.format_compare(a, b, *args.compare))
        if args.json:
            print(json.dumps(rep.compare(a, b)))
        return 0
    if args.dataset == "make-synthetic":
        return _make_synthetic(args.dir)
    if not args.dataset or args.dir:
        raise ValueError(
            "usage: vstream eval DATASET | eval make-synthetic DIR | eval --compare A.json B.json"
        )
    report = _run(args, settings)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(rep.dump(report) + "\n")
    if args.plot:
        from vstream.evaluation.plot import plot_report

        plot_report(report, args.plot)
    print(rep.dump(report) if args.json else rep.format_table(report), flush=True)
    return 0


def _make_synthetic(out: str | None) -> int:
    from vstream.evaluation.synthetic import make_synthetic

    if not out:
        raise ValueError("usage: vstream eval make-synthetic DIR")
    dataset = make_synthetic(out)
    script = Path(out) / "scripts" / f"{VIDEO_ID}.json"
    print(dataset)
    print(
        f"run: vstream eval {dataset} --model 'scripted:{script}' (scripted answers with planted faults: "
        "they test the evaluation, not a model)",
        file=sys.stderr,
    )
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> Any:
    from vstream.evaluation.dataset import load_dataset
    from vstream.evaluation.runner import EvalOptions, evaluate
    from vstream.schema import ClipParams

    items = load_dataset(args.dataset, fmt=args.format, video_root=args.video_root, video_ext=args.video_ext)
    if args.thinking:
        settings = settings.model_copy(update={"model": settings.model.model_copy(update={"thinking": True})})
    params = None
    if any(v is not None for v in (args.fps, args.clip_seconds, args.overlap)):
        c = settings.clips
        params = ClipParams(
            fps=c.fps if args.fps is None else args.fps,
            clip_seconds=c.clip_seconds if args.clip_seconds is None else args.clip_seconds,
            overlap_seconds=c.overlap_seconds if args.overlap is None else args.overlap,
            max_side=c.max_side,
        )
    opts = EvalOptions(
        tasks=tuple(args.task or ()),
        preset=args.preset,
        sport=args.sport,
        event_types=tuple(e.strip() for e in (args.events or "").split(",") if e.strip()),
        params=params,
    )
    backends = Backends(settings, args.model)
    try:
        return evaluate(
            items,
            backends.settings,
            backends.for_item,
            opts,
            dataset=str(args.dataset),
            model_id=backends.label,
            on_video=lambda r: logger.info("%s: %d clips, %d events detected", r.id, r.clips, len(r.events)),
        )
    finally:
        backends.close()


class Backends:
    """One backend for the whole run, or one per video when a scripted path names ``{video_id}``."""

    def __init__(self, settings: Settings, spec: str | None) -> None:
        from vstream.cli_analyze import TINY_NOTE, model_settings

        if spec and spec.startswith("scripted:"):
            model = settings.model.model_copy(update={"type": "scripted", "model": spec[len("scripted:") :]})
            settings = settings.model_copy(update={"model": model})
        else:
            settings = model_settings(settings, spec)
        if settings.model.type == "transformers" and settings.model.model == "tiny":
            print(f"note: {TINY_NOTE}", file=sys.stderr)
        self.settings = settings
        m = settings.model
        # one script per video: the report names the pattern, not the first video's script
        per_video = m.type == "scripted" and VIDEO_ID in m.model
        self.label = f"scripted:{Path(m.model).name}" if per_video else None
        self._made: dict[str, ModelBackend] = {}

    def for_item(self, item: EvalItem) -> ModelBackend:
        from vstream.model.factory import make_backend

        m = self.settings.model
        per_video = m.type == "scripted" and VIDEO_ID in m.model
        name = m.model.replace(VIDEO_ID, item.id) if per_video else m.model
        if name not in self._made:
            self._made[name] = make_backend(m.model_copy(update={"model": name}))
        return self._made[name]

    def close(self) -> None:
        for b in self._made.values():
            b.close()
        self._made.clear()


def add_ask_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ask", help="ask a question about a stream's stored captions, segments and events (needs Redis)"
    )
    p.add_argument("stream", help="stream id")
    p.add_argument("question")
    p.add_argument("--start", type=float, default=None, help="media seconds (default: the stream's start)")
    p.add_argument("--end", type=float, default=None, help="media seconds (default: the stream's end)")
    p.add_argument(
        "--model", default=None, help="tiny, a hub id or local dir, openai:<url>, or scripted:<path>"
    )
    p.add_argument("--thinking", action="store_true", help="turn GLM's thinking mode on")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from vstream.ask import answer_question, dumps, to_text
    from vstream.cli import check_services
    from vstream.model.factory import make_backend
    from vstream.names import Keys
    from vstream.redis_conn import connect

    if args.start is not None and args.end is not None and args.start > args.end:
        raise ValueError(f"--start ({args.start:g}) is after --end ({args.end:g})")
    if not args.question.strip():
        raise ValueError("the question must not be blank")
    check_services(settings, kafka=False)
    backends = Backends(settings, args.model)
    made: list[ModelBackend] = []

    def backend() -> ModelBackend:
        made.append(make_backend(backends.settings.model))
        return made[-1]

    client = connect(settings.redis)
    try:
        answer = answer_question(
            client,
            Keys(settings.redis.key_prefix),
            args.stream,
            args.question.strip(),
            backend,
            settings.ask,
            start=args.start,
            end=args.end,
            thinking=args.thinking or settings.model.thinking,
        )
    finally:
        client.close()
        for b in made:
            b.close()
    print(dumps(answer) if args.json else to_text(answer), flush=True)
    return 0
