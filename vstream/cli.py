"""The ``vstream`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from vstream.config import ConfigError, Settings, error_text, load_settings
from vstream.media.frames import SourceError
from vstream.model.base import BackendError
from vstream.schema import ClipMessage, ClipParams, GateParams, IngestRequest, redact_url
from vstream.vocabulary import TASKS

if TYPE_CHECKING:
    from vstream.presets import Preset
    from vstream.vocabulary import Task

logger = logging.getLogger("vstream")


def _clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source", help="video file path or live URL (rtsp://, rtmp://, http(s):// incl. HLS, udp://, srt://)"
    )
    p.add_argument("--stream-id", default=None, help="stream id (default: derived from the source name)")
    p.add_argument("--fps", type=float, default=None, help="frames sampled per second (default 2)")
    p.add_argument("--clip-seconds", type=float, default=None, help="clip window length (default 8)")
    p.add_argument(
        "--overlap", type=float, default=None, help="overlap between windows in seconds (default 2)"
    )
    p.add_argument(
        "--max-side", type=int, default=None, help="longest frame side, multiple of 28 (default 448)"
    )
    p.add_argument("--realtime", action="store_true", help="replay a file at real speed, as a live stream")
    p.add_argument("--gate", action="store_true", help="skip clips without motion")
    p.add_argument("--backend", choices=["auto", "pyav", "decord"], default=None, help="file decoder")
    p.add_argument(
        "--preset",
        choices=["surveillance", "sports", "lecture"],
        default=None,
        help="a user journey's defaults: task, event types, clip length, gate",
    )
    p.add_argument(
        "--sport", default=None, help="with --preset sports: soccer (default), basketball or tennis"
    )


def _analyze_args(analyze: argparse.ArgumentParser) -> None:
    _clip_args(analyze)
    analyze.add_argument(
        "--task",
        choices=list(TASKS),
        default=None,
        help="analysis task (default: the preset's, else caption)",
    )
    analyze.add_argument(
        "--events",
        default=None,
        help='comma-separated event types, e.g. "person falls,car stops" (implies --task events)',
    )
    analyze.add_argument(
        "--model",
        default=None,
        help="tiny (random weights, for plumbing only), a hub id or local dir, or openai:<url>",
    )
    analyze.add_argument("--thinking", action="store_true", help="turn GLM's thinking mode on")
    analyze.add_argument("--json", action="store_true", help="one JSON object per clip and per event change")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vstream", description="Streaming video analytics with GLM-4.5V.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    clips = sub.add_parser("clips", help="cut a source into clips and print them (no Kafka needed)")
    _clip_args(clips)
    clips.add_argument("--json", action="store_true", help="one JSON object per clip on stdout")

    ingest = sub.add_parser("ingest", help="cut one source into clips and publish them to Kafka")
    _clip_args(ingest)
    ingest.add_argument("--job-id", default=None)

    worker = sub.add_parser("worker", help="run a worker")
    worker.add_argument("kind", choices=["ingest", "infer", "webhooks"])

    _analyze_args(sub.add_parser("analyze", help="the whole pipeline in one process (no Kafka or Redis)"))

    serve = sub.add_parser("serve", help="run the HTTP API (FastAPI + uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    model = sub.add_parser("model", help="model utilities")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    tiny = model_sub.add_parser(
        "make-tiny", help="build the tiny random-weight GLM-4.5V-architecture checkpoint"
    )
    tiny.add_argument("out")

    from vstream.evaluation.cli import add_ask_parser, add_eval_parser

    add_eval_parser(sub)
    add_ask_parser(sub)

    sample = sub.add_parser("sample-video", help="write a synthetic H.264 test video")
    sample.add_argument("out")
    sample.add_argument("--seconds", type=float, default=60.0)
    sample.add_argument("--fps", type=float, default=30.0)
    sample.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    return parser


def request_from_args(args: argparse.Namespace, settings: Settings) -> IngestRequest:
    """An IngestRequest from the clip options; a --preset supplies defaults that explicit flags override."""
    check_scheme(args.source)
    events = tuple(e.strip() for e in (getattr(args, "events", None) or "").split(",") if e.strip())
    p = _preset_from(args, events)
    c = p.params if p else settings.clips
    # `is None`, not `or`: an explicit 0 must reach validation and be refused, not become the default
    params = ClipParams(
        fps=c.fps if args.fps is None else args.fps,
        clip_seconds=c.clip_seconds if args.clip_seconds is None else args.clip_seconds,
        overlap_seconds=c.overlap_seconds if args.overlap is None else args.overlap,
        max_side=c.max_side if args.max_side is None else args.max_side,
    )
    stream_id = args.stream_id or _stream_id_from(args.source)
    return IngestRequest(
        job_id=getattr(args, "job_id", None) or f"{stream_id}-{params.params_hash}",
        stream_id=stream_id,
        source=args.source,
        params=params,
        gate=GateParams(enabled=args.gate or bool(p and p.gate.enabled)),
        realtime=args.realtime,
        task=_task_from(args, p, events),
        event_types=list(p.event_types if p else events),
        preset=p.name if p else None,
        sport=(getattr(args, "sport", None) or "soccer") if p and p.name == "sports" else None,
    )


def _preset_from(args: argparse.Namespace, events: tuple[str, ...]) -> Preset | None:
    from vstream.presets import preset

    name, sport = getattr(args, "preset", None), getattr(args, "sport", None)
    if sport is not None and name != "sports":
        # an error, not an implied preset: --preset is the one switch that picks a journey (task,
        # clip length, gate), and a sub-option should not change all of them behind the user's back
        raise ValueError(f"--sport {sport} needs --preset sports")
    return preset(name, sport=sport or "soccer", event_types=events) if name else None


def _task_from(args: argparse.Namespace, p: Preset | None, events: tuple[str, ...]) -> Task:
    """--task, else the preset's task, else events when --events names some, else caption."""
    task: Task = getattr(args, "task", None) or (p.task if p else "events" if events else "caption")
    if events and task != "events":
        raise ValueError(f"--events needs task 'events'; task {task!r} takes no event types")
    return task


def check_scheme(source: str) -> None:
    """Refuse an unreadable URL scheme before anything else runs (open_source checks it again)."""
    from vstream.media.source import check_scheme as check

    check(source)


class ServiceUnavailable(RuntimeError):
    """Kafka or Redis cannot be reached at start-up."""


_START_HINT = "start the local ones with deploy/local/services.sh start"


def check_services(settings: Settings, *, kafka: bool = True) -> None:
    """Fail with one line naming the service and address, before any work starts."""
    _check_redis(settings.redis.url)
    if kafka:
        _check_kafka(settings.kafka.bootstrap)
        _check_blobs(settings)


def _check_blobs(settings: Settings) -> None:
    from vstream.blobstore import BlobError, open_blob_store

    try:
        open_blob_store(settings.blobs)
    except BlobError as exc:
        raise ServiceUnavailable(f"{exc} (VSTREAM_BLOBS__*)") from exc


def _check_redis(url: str) -> None:
    import redis

    where = redact_url(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except ValueError as exc:  # from_url: not a redis URL
        raise ServiceUnavailable(f"bad Redis URL {where!r} (VSTREAM_REDIS__URL): {exc}") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise ServiceUnavailable(
            f"cannot reach Redis at {where} ({exc}); set VSTREAM_REDIS__URL or {_START_HINT}"
        ) from exc


def _check_kafka(bootstrap: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    if not logger.isEnabledFor(logging.DEBUG):
        kafka_log.setLevel(logging.CRITICAL)  # it logs every retry of the ~30 s bootstrap as an ERROR
    try:
        KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="vstream-check").close()
    except ValueError as exc:  # a malformed host:port
        raise ServiceUnavailable(
            f"bad Kafka address {bootstrap!r} (VSTREAM_KAFKA__BOOTSTRAP): {exc}"
        ) from exc
    except KafkaError as exc:
        raise ServiceUnavailable(
            f"cannot reach Kafka at {bootstrap} ({type(exc).__name__}); "
            f"set VSTREAM_KAFKA__BOOTSTRAP or {_START_HINT}"
        ) from exc
    finally:
        kafka_log.setLevel(level)


def _stream_id_from(source: str) -> str:
    stem = source.rstrip("/").rsplit("/", 1)[-1].split("?")[0].rsplit(".", 1)[0]
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in stem).strip("-._")
    return cleaned[:100] or f"stream-{uuid.uuid4().hex[:8]}"


def clip_summary(msg: ClipMessage) -> dict[str, object]:
    out: dict[str, object] = {
        "clip_id": msg.clip_id,
        "index": msg.index,
        "t_start": msg.t_start,
        "t_end": msg.t_end,
        "n_frames": msg.n_frames,
        "timestamps": msg.timestamps,
        "width": msg.width,
        "height": msg.height,
        "bytes": msg.payload_bytes,
        "clock": msg.clock,
        "last": msg.last,
    }
    if msg.wall_timestamps is not None:
        out["wall_timestamps"] = msg.wall_timestamps
    return out


class _PrintSink:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def send(self, msg: ClipMessage) -> None:
        if self.as_json:
            print(json.dumps(clip_summary(msg)), flush=True)
        else:
            print(
                f"{msg.clip_id}  {msg.t_start:9.3f}-{msg.t_end:9.3f}s  {msg.n_frames:3d} frames  "
                f"{msg.width}x{msg.height}  {msg.payload_bytes / 1024:7.1f} KiB",
                flush=True,
            )


def cmd_clips(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from vstream.ingest import describe, open_for, run_ingest

    req = request_from_args(args, settings)
    if args.backend:
        settings = settings.model_copy(
            update={"decode": settings.decode.model_copy(update={"backend": args.backend})}
        )
    started = time.monotonic()
    source = open_for(req, settings.decode)
    total = source.info.duration
    with tqdm(
        total=round(total, 1) if total else None,
        unit="s",
        file=sys.stderr,
        disable=None,
        desc=req.stream_id,
        leave=False,
    ) as bar:

        def progress(t: float) -> None:
            bar.update(round(t, 1) - bar.n)

        stats = run_ingest(
            req, source, _PrintSink(args.json), quality=settings.clips.jpeg_quality, on_progress=progress
        )
    logger.info(
        "%s: %s (decoder %s, skip_frame %s)",
        req.stream_id,
        describe(stats, started),
        source.info.backend,
        source.info.skip_frame,
    )
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from workers.ingest_worker import ingest_once

    req = request_from_args(args, settings)
    check_services(settings)
    return ingest_once(req, settings)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    check_services(settings, kafka=args.kind != "webhooks")
    if args.kind == "webhooks":
        from workers.webhook_worker import WebhookWorker

        return WebhookWorker(settings).run()
    if args.kind == "infer":
        from workers.infer_worker import InferWorker

        return InferWorker(settings).run()
    from workers.ingest_worker import IngestWorker

    return IngestWorker(settings).run()


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from vstream.cli_analyze import run_analyze

    return run_analyze(args, settings, request_from_args(args, settings))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    # checked before uvicorn starts: a failure inside its lifespan is a traceback and exit code 3
    check_services(settings)
    if args.workers > 1:  # each process builds its own app (and reads the same VSTREAM_* settings)
        uvicorn.run("api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers)
        return 0
    from api.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port)
    return 0


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    from vstream.model.tiny import make_tiny_checkpoint

    print(make_tiny_checkpoint(args.out))
    print("note: random weights; this checkpoint proves plumbing, never answers", file=sys.stderr)
    return 0


def cmd_sample_video(args: argparse.Namespace, settings: Settings) -> int:
    from vstream.media.synth import make_sample_video

    width, height = (int(x) for x in args.size.lower().split("x"))
    path = make_sample_video(args.out, seconds=args.seconds, fps=args.fps, width=width, height=height)
    print(path)
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from vstream.evaluation.cli import cmd_eval as run

    return run(args, settings)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from vstream.evaluation.cli import cmd_ask as run

    return run(args, settings)


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "clips": cmd_clips,
    "ingest": cmd_ingest,
    "worker": cmd_worker,
    "sample-video": cmd_sample_video,
    "analyze": cmd_analyze,
    "model": cmd_model,
    "serve": cmd_serve,
    "eval": cmd_eval,
    "ask": cmd_ask,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"vstream: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # kafka-python logs every connection and rebalance step at INFO
        logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return COMMANDS[args.command](args, settings)
    except (SourceError, ServiceUnavailable) as exc:
        print(f"vstream: error: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:  # no such model, server down or refusing at start-up
        print(f"vstream: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (ValidationError, ValueError) as exc:
        print(f"vstream: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# Request fields as the user typed them on the command line.
_FLAGS = {
    "fps": "--fps",
    "clip_seconds": "--clip-seconds",
    "overlap_seconds": "--overlap",
    "max_side": "--max-side",
    "event_types": "--events",
    "stream_id": "--stream-id",
    "job_id": "--job-id",
}


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(_error_line(e["loc"], error_text(e)) for e in exc.errors())
    return str(exc).splitlines()[0]


def _error_line(loc: tuple[int | str, ...], text: str) -> str:
    if not loc:  # a check across fields: its message names them
        return text
    where = ".".join(str(p) for p in loc)
    return f"{_FLAGS.get(where, where)}: {text}"


if __name__ == "__main__":
    sys.exit(main())
