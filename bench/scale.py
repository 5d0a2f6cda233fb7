"""Scale-out benchmark: does adding workers add throughput?

    deploy/local/kafka-cluster.sh start
    python bench/scale.py [--infer 1,2,4] [--ingest 1,2] [--latency 0.5] [--clips-per-worker 16]

Infer: N infer worker processes (scripted backend, a fixed ``--latency`` per clip, so the model and not
this machine's CPU is the bottleneck, as a GPU is in production) consume a clips topic of
``--partitions`` partitions on the 3-broker cluster (RF 3, min.insync.replicas 2). Once all N have joined
the consumer group, ``N x --clips-per-worker`` small clips spread evenly over the partitions are
published and the time to the last stored result gives clips/s. Ingest: M ingest workers decode M
sample videos (one job each) into the same kind of topic; clips/s until every clip is acknowledged.
Each row reports the ratio to M or N times the single-worker rate measured in the same run (target for
infer >= 0.9 up to the partition count). Scripted answers: this measures the pipeline, not a model.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from vstream.blobstore import LocalBlobStore
from vstream.config import BlobSettings, KafkaSettings, RedisSettings, Settings
from vstream.encode import encode_jpeg
from vstream.kafka_io import ClipPublisher, ensure_topics, make_producer
from vstream.names import Keys, Topics
from vstream.schema import ClipMessage, ClipParams, IngestRequest, clip_id_for

logger = logging.getLogger(__name__)

CLUSTER = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
PARAMS = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)


@dataclass(frozen=True)
class Config:
    bootstrap: str
    redis_url: str
    partitions: int
    replication: int
    latency_s: float
    clips_per_worker: int
    video_seconds: float
    timeout_s: float


@dataclass(frozen=True)
class Run:
    kind: str  # "infer" or "ingest"
    workers: int
    clips: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.clips / self.seconds


def scaling_rows(runs: list[Run]) -> list[str]:
    """One line per run: clips/s and the ratio to ``workers x`` the one-worker rate of the same kind."""
    lines = [f"{'kind':<7}{'workers':>8}{'clips':>7}{'seconds':>9}{'clips/s':>9}{'vs N x 1':>10}"]
    for run in runs:
        base = next((r for r in runs if r.kind == run.kind and r.workers == 1), None)
        ratio = f"{run.rate / (run.workers * base.rate):.2f}" if base else "-"
        lines.append(
            f"{run.kind:<7}{run.workers:>8}{run.clips:>7}{run.seconds:>9.2f}{run.rate:>9.2f}{ratio:>10}"
        )
    return lines


def streams_on_partitions(partitions: int) -> list[str]:
    """One stream id per partition, as kafka-python's default partitioner places keyed messages."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        found.setdefault((murmur2(f"s{i}".encode()) & 0x7FFFFFFF) % partitions, f"s{i}")
        i += 1
    return [found[p] for p in range(partitions)]


def settings_for(cfg: Config, root: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(
        kafka=KafkaSettings(
            bootstrap=cfg.bootstrap,
            topic_prefix=f"bench.{run}.",
            clip_partitions=cfg.partitions,
            replication_factor=cfg.replication,
            min_insync_replicas=min(2, cfg.replication),
        ),
        redis=RedisSettings(url=cfg.redis_url, key_prefix=f"bench:{run}:"),
        blobs=BlobSettings(root=root / "blobs"),
    )


def worker_env(s: Settings, extra: dict[str, str]) -> dict[str, str]:
    k = s.kafka
    return {
        **{key: v for key, v in os.environ.items() if not key.startswith("VSTREAM_")},
        "VSTREAM_KAFKA__BOOTSTRAP": k.bootstrap,
        "VSTREAM_KAFKA__TOPIC_PREFIX": k.topic_prefix,
        "VSTREAM_KAFKA__CLIP_PARTITIONS": str(k.clip_partitions),
        "VSTREAM_KAFKA__REPLICATION_FACTOR": str(k.replication_factor),
        "VSTREAM_KAFKA__MIN_INSYNC_REPLICAS": str(k.min_insync_replicas),
        "VSTREAM_REDIS__URL": s.redis.url,
        "VSTREAM_REDIS__KEY_PREFIX": s.redis.key_prefix,
        "VSTREAM_BLOBS__ROOT": str(s.blobs.root),
        "VSTREAM_LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"),
        **extra,
    }


@contextmanager
def workers(s: Settings, kind: str, n: int, root: Path, extra: dict[str, str]) -> Iterator[None]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "vstream.cli", "worker", kind],
            env=worker_env(s, extra),
            stdout=(root / f"{kind}-{i}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        for i in range(n)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def wait(predicate: Callable[[], bool], timeout_s: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            tails = "".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(root.glob("*.log")))
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")
        time.sleep(0.1)


def group_ready(s: Settings, group: str, members: int, partitions: int) -> bool:
    """``members`` consumers in a stable group that between them own all ``partitions``: a member that
    joined before the topic's metadata reached it owns nothing until its next metadata refresh."""
    admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap.split(","))
    try:
        desc = admin.describe_groups([group])[group]
    finally:
        admin.close()
    owned = sum(
        len(a["partitions"])
        for m in desc["members"]
        for a in (m.get("member_assignment") or {}).get("assigned_partitions", [])
    )
    return desc["group_state"] == "Stable" and len(desc["members"]) == members and owned == partitions


def small_clips(streams: list[str], per_stream: int) -> list[ClipMessage]:
    frame = encode_jpeg(np.full((56, 56, 3), 90, np.uint8), 80)  # tiny: the benchmark is not about bytes
    return [
        ClipMessage(
            stream_id=st,
            clip_id=clip_id_for(st, PARAMS, i),
            index=i,
            params=PARAMS,
            t_start=i * 3.0,
            t_end=i * 3.0 + 4,
            timestamps=[i * 3.0 + k / 2 for k in range(8)],
            clock="pts",
            width=56,
            height=56,
            frames=[frame] * 8,
            task="caption",
        )
        for st in streams
        for i in range(per_stream)
    ]


def run_infer(cfg: Config, n: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="vstream-scale-") as tmp:
        root = Path(tmp)
        s = settings_for(cfg, root)
        topics, keys, r = (
            Topics(s.kafka.topic_prefix),
            Keys(s.redis.key_prefix),
            redis.Redis.from_url(cfg.redis_url),
        )
        ensure_topics(
            s.kafka, {topics.clips: cfg.partitions, topics.results: cfg.partitions, topics.dead_letter: 1}
        )
        script = root / "script.json"
        script.write_text(
            f'{{"delay_s": {cfg.latency_s}, "outputs": {{"caption": "<think></think>A scene."}}}}'
        )
        model = {
            "VSTREAM_MODEL__TYPE": "scripted",
            "VSTREAM_MODEL__MODEL": str(script),
            "VSTREAM_MODEL__MAX_BATCH": "1",
            "VSTREAM_MODEL__MAX_IN_FLIGHT": "1",  # one clip at a time: a worker is one fixed-speed model
        }
        streams = streams_on_partitions(cfg.partitions)
        per_stream = -(-n * cfg.clips_per_worker // len(streams))
        clips = small_clips(streams, per_stream)
        try:
            with workers(s, "infer", n, root, model):
                wait(
                    lambda: group_ready(s, topics.infer_group, n, cfg.partitions),
                    cfg.timeout_s,
                    f"{n} infer workers",
                    root,
                )
                producer = make_producer(s.kafka, client_id="bench-scale")
                publisher = ClipPublisher(
                    producer, topics.clips, LocalBlobStore(root), s.kafka.max_message_bytes
                )
                started = time.monotonic()
                for clip in clips:
                    publisher.send(clip)
                publisher.flush(timeout_s=60)
                producer.close()

                def done() -> bool:
                    return sum(int(r.zcard(keys.results(st))) for st in streams) >= len(clips)

                wait(done, cfg.timeout_s, f"{len(clips)} results", root)
                elapsed = time.monotonic() - started
        finally:
            cleanup(s, r)
        return Run("infer", n, len(clips), elapsed)


def run_ingest(cfg: Config, m: int, videos: list[Path]) -> Run:
    with tempfile.TemporaryDirectory(prefix="vstream-scale-") as tmp:
        root = Path(tmp)
        s = settings_for(cfg, root)
        topics, r = Topics(s.kafka.topic_prefix), redis.Redis.from_url(cfg.redis_url)
        ensure_topics(
            s.kafka, {topics.ingest_requests: 1, topics.ingest_errors: 1, topics.clips: cfg.partitions}
        )
        per_video = int((cfg.video_seconds - PARAMS.clip_seconds) // 3) + 1  # step 3 s
        expected = per_video * m
        try:
            with workers(s, "ingest", m, root, {"VSTREAM_WORKER_MAX_JOBS": "1"}):
                wait(
                    lambda: group_ready(s, topics.ingest_group, m, 1),
                    cfg.timeout_s,
                    f"{m} ingest workers",
                    root,
                )
                producer = make_producer(s.kafka, client_id="bench-scale")
                started = time.monotonic()
                for i, video in enumerate(videos[:m]):
                    req = IngestRequest(
                        job_id=f"j{i}", stream_id=f"v{i}", source=str(video), params=PARAMS, task="caption"
                    )
                    producer.send(
                        topics.ingest_requests,
                        key=req.stream_id.encode(),
                        value=req.model_dump_json().encode(),
                    )
                producer.flush(timeout=60)
                producer.close()
                offsets = KafkaConsumer(
                    bootstrap_servers=s.kafka.bootstrap.split(","), enable_auto_commit=False
                )
                try:
                    wait(lambda: messages_on(offsets, topics.clips) >= expected, cfg.timeout_s, "clips", root)
                finally:
                    offsets.close()
                elapsed = time.monotonic() - started
        finally:
            cleanup(s, r)
        return Run("ingest", m, expected, elapsed)


def messages_on(consumer: KafkaConsumer, topic: str) -> int:
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    return sum(consumer.end_offsets(parts).values())


def cleanup(s: Settings, r: redis.Redis) -> None:
    admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap.split(","))
    try:
        mine = [t for t in admin.list_topics() if t.startswith(s.kafka.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()
    keys = list(r.scan_iter(Keys(s.redis.key_prefix).pattern, count=1000))
    if keys:
        r.delete(*keys)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=CLUSTER, help="Kafka brokers (default: the local 3-broker cluster)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    p.add_argument("--replication", type=int, default=3)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--infer", default="1,2,4", help="infer worker counts")
    p.add_argument("--ingest", default="1,2", help="ingest worker counts ('' = skip)")
    p.add_argument("--latency", type=float, default=0.5, help="scripted model seconds per clip")
    p.add_argument("--clips-per-worker", type=int, default=16)
    p.add_argument("--video-seconds", type=float, default=40.0)
    p.add_argument("--timeout", type=float, default=300.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Run]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: workers stopped, topics deleted
    logging.getLogger("kafka").setLevel(logging.ERROR)  # it warns about every slow poll on a busy machine
    cfg = Config(
        args.bootstrap,
        args.redis,
        args.partitions,
        args.replication,
        args.latency,
        args.clips_per_worker,
        args.video_seconds,
        args.timeout,
    )
    print(
        f"partitions {cfg.partitions}, replication {cfg.replication}, scripted latency {cfg.latency_s} s/clip"
    )
    runs: list[Run] = []
    for n in (int(n) for n in args.infer.split(",") if n):
        runs.append(run_infer(cfg, n))
        print(scaling_rows(runs)[-1], flush=True)
    counts = [int(m) for m in args.ingest.split(",") if m]
    if counts:
        from vstream.media.synth import make_sample_video

        with tempfile.TemporaryDirectory(prefix="vstream-scale-media-") as media:
            videos = [
                make_sample_video(
                    Path(media) / f"v{i}.mp4", seconds=cfg.video_seconds, fps=10, width=320, height=180
                )
                for i in range(max(counts))
            ]
            for m in counts:
                runs.append(run_ingest(cfg, m, videos))
                print(scaling_rows(runs)[-1], flush=True)
    print("\n".join(scaling_rows(runs)))
    return runs


if __name__ == "__main__":
    main()
