"""Serving benchmark: does ``vstream worker infer`` keep an OpenAI-compatible model server saturated?

    python bench/serve.py [--base-url http://127.0.0.1:8000/v1] [--clips 48] [--concurrency 1,2,4,8,16]

In one run, with the same clips (``--streams`` streams of synthetic 2 fps clips):
  * direct load: the clips sent straight to the server through the same backend and analyzer the worker
    uses (decode, request, parse), from N threads for each N of ``--concurrency``; the best clips/s is
    the baseline (what the server gives at its best concurrency);
  * the worker: a real ``vstream worker infer`` process (openai backend, ``max_in_flight`` = the best N
    unless ``--max-in-flight``), fed through Kafka, results counted in Redis. Warm-up clips go first, so
    start-up and the consumer-group join are not timed.
The figure is worker clips/s / best direct clips/s (target >= 0.9). Needs Kafka and Redis (the test
servers: deploy/local/services.sh) and the model server (deploy/local/vllm.sh); all topics and keys it
makes are under a fresh prefix and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from vstream.analysis.analyzer import ClipAnalyzer
from vstream.blobstore import LocalBlobStore
from vstream.config import KafkaSettings, ModelSettings, RedisSettings, Settings
from vstream.encode import encode_jpeg
from vstream.kafka_io import ensure_topics, make_producer
from vstream.names import Keys, Topics
from vstream.schema import ClipMessage, ClipParams, clip_id_for, encode_clip

PARAMS = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Rate:
    clips: int
    seconds: float
    cpu_s: float = 0.0  # CPU seconds of the client side (the bench's threads, or the worker process)
    server_cpu_s: float = 0.0  # of the model server's processes, when they can be found (local vLLM)

    @property
    def per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    def cpu_line(self) -> str:
        server = f", server {1000 * self.server_cpu_s / self.clips:.1f}" if self.server_cpu_s else ""
        return f"CPU ms/clip: client {1000 * self.cpu_s / self.clips:.1f}{server}"


def _proc_cpu_s(pids: tuple[int, ...]) -> float:
    """utime + stime of these processes (and their finished children) from /proc, in seconds."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def server_pids(base_url: str) -> tuple[int, ...]:
    """The local model server's processes (vLLM forks engine workers), to charge its CPU per clip; empty
    when the server is not on this machine or not vLLM."""
    if "127.0.0.1" not in base_url and "localhost" not in base_url:
        return ()
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"vllm" in cmd or b"VLLM" in cmd:
            found.append(int(proc.name))
    return tuple(found)


def make_clips(
    streams: list[str], per_stream: int, side: int, frames: int, seed: int = 0
) -> list[ClipMessage]:
    """Noise frames (every clip different, so no server-side cache makes a later run cheaper)."""
    rng = np.random.default_rng(seed)
    out = []
    for st in streams:
        for i in range(per_stream):
            jpegs = [encode_jpeg(rng.integers(0, 255, (side, side, 3), np.uint8), 80) for _ in range(frames)]
            out.append(
                ClipMessage(
                    stream_id=st,
                    clip_id=clip_id_for(st, PARAMS, i),
                    index=i,
                    params=PARAMS,
                    t_start=i * 3.0,
                    t_end=i * 3.0 + frames / PARAMS.fps,
                    timestamps=[i * 3.0 + k / PARAMS.fps for k in range(frames)],
                    clock="pts",
                    width=side,
                    height=side,
                    frames=jpegs,
                    task="caption",
                    produced_at=time.time(),
                )
            )
    return out


def direct(
    analyzer: ClipAnalyzer, clips: list[ClipMessage], concurrency: int, servers: tuple[int, ...] = ()
) -> Rate:
    """All clips through the analyzer from ``concurrency`` threads; every clip must get an answer."""
    todo, lock, failures = list(clips), threading.Lock(), []

    def loop() -> None:
        while True:
            with lock:
                if not todo:
                    return
                clip = todo.pop()
            (a,) = analyzer.run([clip])
            if a.result is None:
                failures.append(a.error)

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    started, cpu, server = time.perf_counter(), time.process_time(), _proc_cpu_s(servers)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} clips got no answer under direct load: {failures[0]}")
    return Rate(
        len(clips),
        time.perf_counter() - started,
        time.process_time() - cpu,
        _proc_cpu_s(servers) - server if servers else 0.0,
    )


def worker_env(s: Settings, m: ModelSettings, log_level: str = "WARNING") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSTREAM_")}
    env.update(
        {
            "VSTREAM_KAFKA__BOOTSTRAP": s.kafka.bootstrap,
            "VSTREAM_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
            "VSTREAM_KAFKA__CLIP_PARTITIONS": str(s.kafka.clip_partitions),
            "VSTREAM_REDIS__URL": s.redis.url,
            "VSTREAM_REDIS__KEY_PREFIX": s.redis.key_prefix,
            "VSTREAM_BLOBS__ROOT": str(s.blobs.root),
            "VSTREAM_LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in ("type", "base_url", "model", "frames", "max_new_tokens", "max_in_flight", "max_concurrency"):
        env[f"VSTREAM_MODEL__{name.upper()}"] = str(getattr(m, name))
    return env


def wait(predicate: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            raise RuntimeError(f"the infer worker exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)


def await_partitions(s: Settings, topic: str, timeout_s: float = 30.0) -> None:
    """A consumer group that joins before a new topic's partitions are in the brokers' metadata is
    assigned nothing until its next metadata refresh (minutes): start the worker only after that."""
    from kafka import KafkaConsumer

    probe = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap.split(","))
    try:
        deadline = time.monotonic() + timeout_s
        while len(probe.partitions_for_topic(topic) or ()) < s.kafka.clip_partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partition metadata after {timeout_s:.0f} s")
            time.sleep(0.2)
            probe.topics()  # forces a metadata refresh
    finally:
        probe.close()
    time.sleep(1.0)


def through_worker(
    s: Settings,
    m: ModelSettings,
    warm: list[ClipMessage],
    clips: list[ClipMessage],
    log: Path,
    log_level: str = "WARNING",
    servers: tuple[int, ...] = (),
) -> Rate:
    topics, keys = Topics(s.kafka.topic_prefix), Keys(s.redis.key_prefix)
    r = redis.Redis.from_url(s.redis.url)
    ensure_topics(
        s.kafka,
        {
            topics.clips: s.kafka.clip_partitions,
            topics.results: s.kafka.clip_partitions,
            topics.dead_letter: 1,
        },
    )
    await_partitions(s, topics.clips)
    producer = make_producer(s.kafka, client_id="bench-serve")

    def publish(batch: list[tuple[bytes, bytes]]) -> None:
        for key, value in batch:
            producer.send(topics.clips, key=key, value=value)
        producer.flush(timeout=60)

    # encoded before the clock starts: serialising clips is the ingest side's cost, not the worker's
    encoded = [[(c.stream_id.encode(), encode_clip(c)) for c in batch] for batch in (warm, clips)]

    def stored(batch: list[ClipMessage]) -> int:
        return sum(int(r.zcard(keys.results(st))) for st in {c.stream_id for c in batch})

    cmd = [sys.executable, "-m", "vstream.cli", "worker", "infer"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=worker_env(s, m, log_level), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        publish(encoded[0])
        wait(lambda: stored(warm) >= len(warm), 600, "the warm-up clips", proc)
        started, cpu, server = time.perf_counter(), _proc_cpu_s((proc.pid,)), _proc_cpu_s(servers)
        publish(encoded[1])
        wait(lambda: stored(clips) >= len(clips), 1800, "every timed clip", proc)
        return Rate(
            len(clips),
            time.perf_counter() - started,
            _proc_cpu_s((proc.pid,)) - cpu,
            _proc_cpu_s(servers) - server if servers else 0.0,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        producer.close(timeout=10)


def cleanup(s: Settings) -> None:
    from kafka import KafkaAdminClient

    r = redis.Redis.from_url(s.redis.url)
    found = list(r.scan_iter(Keys(s.redis.key_prefix).pattern, count=1000))
    if found:
        r.delete(*found)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap.split(","))
    try:
        mine = [t for t in admin.list_topics() if t.startswith(s.kafka.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def model_settings(args: argparse.Namespace, in_flight: int) -> ModelSettings:
    return ModelSettings(
        type="openai",
        base_url=args.base_url,
        model=args.model,
        frames=args.frames,
        max_new_tokens=args.max_new_tokens,
        max_in_flight=in_flight,
        max_concurrency=in_flight,
    )


def run(args: argparse.Namespace) -> float:
    from vstream.model.factory import make_backend

    levels = sorted({int(x) for x in args.concurrency.split(",")})
    streams = [f"bench-{k}" for k in range(args.streams)]
    per_stream = -(-args.clips // args.streams)
    clips = make_clips(streams, per_stream, args.side, args.frames_per_clip)
    warm = make_clips(["bench-warm"], max(4, args.warmup), args.side, args.frames_per_clip, seed=1)
    print(
        f"server {args.base_url} model {args.model}: {len(clips)} clips of {args.frames_per_clip} frames "
        f"{args.side}x{args.side}, {args.streams} streams, max_new_tokens {args.max_new_tokens}"
    )
    servers = server_pids(args.base_url)
    backend = make_backend(model_settings(args, max(levels)))
    frames = getattr(getattr(backend, "transport", None), "name", args.frames)
    tmp = Path(tempfile.mkdtemp(prefix="vstream-bench-serve-"))
    try:
        analyzer = ClipAnalyzer(backend, LocalBlobStore(tmp), max_new_tokens=args.max_new_tokens)
        direct(analyzer, warm, max(levels))  # warm the server (and its caches of the warm-up clips only)
        rates = {}
        for n in levels:
            rates[n] = direct(analyzer, clips, n, servers)
            print(
                f"  direct, {n:3d} in flight: {rates[n].per_s:7.3f} clips/s ({rates[n].seconds:.1f} s; "
                f"{rates[n].cpu_line()})"
            )
    finally:
        backend.close()
    best = max(rates, key=lambda n: rates[n].per_s)
    in_flight = args.max_in_flight or best
    run_id = uuid.uuid4().hex[:8]
    s = Settings(
        kafka=KafkaSettings(
            bootstrap=args.kafka, topic_prefix=f"bench.{run_id}.", clip_partitions=args.partitions
        ),
        redis=RedisSettings(url=args.redis, key_prefix=f"bench:{run_id}:"),
    )
    s = s.model_copy(update={"blobs": s.blobs.model_copy(update={"root": tmp / "blobs"})})
    m = model_settings(args, in_flight).model_copy(update={"frames": frames})
    try:
        worker = through_worker(s, m, warm, clips, tmp / "infer.log", args.worker_log_level, servers)
    finally:
        cleanup(s)
    ratio = worker.per_s / rates[best].per_s
    print(
        f"  worker,  {in_flight:3d} in flight: {worker.per_s:7.3f} clips/s ({worker.seconds:.1f} s; "
        f"{worker.cpu_line()})"
    )
    print(f"worker / best direct ({best} in flight): {ratio:.2f}  (target >= 0.9)")
    return ratio


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", default="glm-4.5v")
    p.add_argument("--frames", default="auto", choices=["auto", "video", "video-kwargs", "images"])
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--side", type=int, default=112, help="frame side in pixels (a multiple of 28)")
    p.add_argument("--frames-per-clip", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--concurrency", default="1,2,4,8,16", help="direct-load levels to sweep")
    p.add_argument("--max-in-flight", type=int, default=0, help="the worker's; 0 = the best direct level")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--worker-log-level", default="WARNING", help="INFO logs one line per clip")
    p.add_argument("--kafka", default="127.0.0.1:9092")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
