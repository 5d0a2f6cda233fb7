"""Many hosts, simulated: one ingest and two infer workers, each a process in its own working directory
with its own local blob root, sharing only Kafka, Redis and S3. Clips of noisy frames exceed Kafka's
1 MiB limit, so every one crosses through S3; each is analysed exactly once and no blob is left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import records, settings_env, wait_for
from tests.helpers.distributed import (
    blob_env,
    noisy_video,
    s3_keys,
    streams_on_partitions,
    submit_jobs,
)
from vstream.config import BlobSettings, Settings
from vstream.kafka_io import ensure_topics, make_consumer
from vstream.names import Keys, Topics
from vstream.schema import ClipParams, IngestRequest, decode_clip

pytestmark = pytest.mark.integration
PARAMS = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)  # 10 s: windows at 0, 3 and 6 s


def start_host(
    s: Settings, blobs: BlobSettings, home: Path, kind: str, **env: str
) -> subprocess.Popen[bytes]:
    """A worker as if on its own machine: its own cwd and local blob root, S3 for claim-checks."""
    home.mkdir(parents=True)
    return subprocess.Popen(
        [sys.executable, "-m", "vstream.cli", "worker", kind],
        cwd=home,
        env={
            **settings_env(s),
            **blob_env(blobs),
            "VSTREAM_BLOBS__ROOT": str(home / "blobs"),
            "VSTREAM_CLIPS__JPEG_QUALITY": "95",
            **env,
        },
        stdout=(home / f"{kind}.log").open("ab"),
        stderr=subprocess.STDOUT,
    )


def claim_checked_refs(s: Settings, expected: int) -> list[str]:
    consumer = make_consumer(s.kafka, "test-audit", Topics(s.kafka.topic_prefix).clips)
    refs: list[str] = []
    try:
        for _ in range(60):
            for recs in consumer.poll(timeout_ms=500).values():
                refs += [decode_clip(r.value).payload_ref or "inline" for r in recs]
            if len(refs) >= expected:
                break
    finally:
        consumer.close()
    return refs


def test_workers_sharing_only_kafka_redis_and_s3_analyse_every_large_clip_once(
    settings: Settings, s3_blobs: BlobSettings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    keys, topics = Keys(settings.redis.key_prefix), Topics(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, {topics.clips: settings.kafka.clip_partitions})
    streams = streams_on_partitions(settings.kafka.clip_partitions)  # one stream per infer worker
    hosts = {name: tmp_path / name for name in ("ingest-host", "gpu-1", "gpu-2")}
    script = tmp_path / "gpu-script.json"
    script.write_text(json.dumps({"delay_s": 0.2, "outputs": {"caption": "<think></think>A caption."}}))
    model = {"VSTREAM_MODEL__TYPE": "scripted", "VSTREAM_MODEL__MODEL": str(script)}
    procs = [
        start_host(settings, s3_blobs, hosts["gpu-1"], "infer", **model),
        start_host(settings, s3_blobs, hosts["gpu-2"], "infer", **model),
        start_host(settings, s3_blobs, hosts["ingest-host"], "ingest"),
    ]
    videos = [noisy_video(hosts["ingest-host"] / f"{stream}.mp4", seconds=10) for stream in streams]

    def results() -> dict[str, list[int]]:
        return {st: sorted(r["index"] for r in records(redis_client, keys.results(st))) for st in streams}

    try:
        submit_jobs(
            settings.kafka,
            *(
                IngestRequest(job_id=f"j-{st}", stream_id=st, source=str(v), params=PARAMS, task="caption")
                for st, v in zip(streams, videos, strict=True)
            ),
        )
        wait_for(lambda: all(len(v) >= 3 for v in results().values()), 240, "3 results per stream")
        wait_for(lambda: not s3_keys(s3_blobs), 60, "every blob deleted once its clip settled")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    logs = {
        name: (home / f"{'ingest' if name == 'ingest-host' else 'infer'}.log").read_text()
        for name, home in hosts.items()
    }
    assert results() == {st: [0, 1, 2] for st in streams}, logs
    refs = claim_checked_refs(settings, 6)
    assert len(refs) == 6 and all(r.startswith(f"{s3_blobs.url}/") for r in refs), refs
    written = [logs[g].count("outcome=written") for g in ("gpu-1", "gpu-2")]
    assert sum(written) == 6, f"each clip analysed once, got {written}"
    assert s3_keys(s3_blobs) == []
    assert not any((home / "blobs").exists() for home in hosts.values()), "nothing on a local disk"
