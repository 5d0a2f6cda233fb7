"""Helpers for the multi-host tests and bench/scale.py: the local S3 (deploy/local/s3.sh), the local
3-broker Kafka (deploy/local/kafka-cluster.sh), noisy media whose clips exceed Kafka's message limit,
and stream ids that land on chosen partitions."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from kafka import KafkaAdminClient
from kafka.partitioner.default import murmur2
from pydantic import SecretStr

from vstream.config import BlobSettings, KafkaSettings
from vstream.kafka_io import make_consumer, make_producer
from vstream.names import Topics
from vstream.schema import IngestRequest, decode_clip

REPO = Path(__file__).resolve().parents[2]
S3_ENDPOINT = "http://127.0.0.1:8333"  # deploy/local/s3.sh defaults
S3_BUCKET = "vstream"
S3_KEYS = ("vstream", "vstream-secret")
CLUSTER_SCRIPT = REPO / "deploy" / "local" / "kafka-cluster.sh"
CLUSTER_BOOTSTRAP = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def s3_blob_settings(prefix: str, root: Path | None = None, **kw: object) -> BlobSettings:
    return BlobSettings(
        url=f"s3://{S3_BUCKET}/{prefix}",
        root=root or Path("var/blobs"),
        s3_endpoint=S3_ENDPOINT,
        s3_access_key_id=SecretStr(S3_KEYS[0]),
        s3_secret_access_key=SecretStr(S3_KEYS[1]),
        s3_path_style=True,
        s3_allow_http=True,
        **kw,
    )


def blob_env(b: BlobSettings) -> dict[str, str]:
    """The S3 blob settings as VSTREAM_* variables, for worker subprocesses."""
    assert b.url and b.s3_endpoint and b.s3_access_key_id and b.s3_secret_access_key
    return {
        "VSTREAM_BLOBS__URL": b.url,
        "VSTREAM_BLOBS__S3_ENDPOINT": b.s3_endpoint,
        "VSTREAM_BLOBS__S3_ACCESS_KEY_ID": b.s3_access_key_id.get_secret_value(),
        "VSTREAM_BLOBS__S3_SECRET_ACCESS_KEY": b.s3_secret_access_key.get_secret_value(),
        "VSTREAM_BLOBS__S3_PATH_STYLE": "true",
        "VSTREAM_BLOBS__S3_ALLOW_HTTP": "true",
    }


def cluster(*args: str, timeout: float = 300) -> str:
    """deploy/local/kafka-cluster.sh ARGS...; returns its output, raises with it on failure."""
    proc = subprocess.run(
        [str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kafka-cluster.sh {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def noisy_video(path: Path, seconds: float, fps: float = 4.0, width: int = 448, height: int = 252) -> Path:
    """Lossless H.264 of random noise: after JPEG at high quality each frame stays ~150 kB, so an
    8-frame clip is well over Kafka's 1 MiB and must go through the claim-check store."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast", "g": "4"}
        for _ in range(round(seconds * fps)):
            image = rng.integers(0, 256, (height, width, 3), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def streams_on_partitions(partitions: int, prefix: str = "cam") -> list[str]:
    """One stream id per partition, as kafka-python's default partitioner places keyed messages."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        name = f"{prefix}{i}"
        found.setdefault((murmur2(name.encode()) & 0x7FFFFFFF) % partitions, name)
        i += 1
    return [found[p] for p in range(partitions)]


def submit_jobs(kafka: KafkaSettings, *reqs: IngestRequest) -> None:
    """Ingest requests onto the requests topic, as the API sends them."""
    producer = make_producer(kafka, client_id="test-submit")
    try:
        for req in reqs:
            producer.send(
                Topics(kafka.topic_prefix).ingest_requests,
                key=req.stream_id.encode(),
                value=req.model_dump_json().encode(),
            ).get(timeout=60)
    finally:
        producer.close()


def clip_ids_in_topic(kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 60) -> list[str]:
    """Every clip id on ``topic`` from the beginning (a throwaway group), duplicates included."""
    consumer = make_consumer(kafka, f"test-audit-{uuid.uuid4().hex[:6]}", topic)
    ids: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                ids += [decode_clip(r.value).clip_id for r in recs]
            if len(ids) >= expected:
                for recs in consumer.poll(timeout_ms=2000).values():  # anything beyond: duplicates
                    ids += [decode_clip(r.value).clip_id for r in recs]
                break
    finally:
        consumer.close()
    return ids


def delete_topics(kafka: KafkaSettings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap.split(","))
    try:
        mine = [t for t in admin.list_topics() if t.startswith(kafka.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def partition_leader(kafka: KafkaSettings, topic: str, partition: int) -> int:
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap.split(","))
    try:
        (desc,) = admin.describe_topics([topic])
        return int(next(p["leader_id"] for p in desc["partitions"] if p["partition_index"] == partition))
    finally:
        admin.close()


@dataclass(frozen=True)
class TopicReplication:
    replicas: int  # of partition 0
    min_insync: int


def topic_replication(kafka: KafkaSettings, topic: str) -> TopicReplication:
    """Replication of ``topic`` as the brokers report it."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap.split(","))
    try:
        (desc,) = admin.describe_topics([topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return TopicReplication(
            replicas=len(desc["partitions"][0]["replica_nodes"]),
            min_insync=int(configs["topic"][topic]["min.insync.replicas"]["value"]),
        )
    finally:
        admin.close()


def s3_keys(blobs: BlobSettings) -> list[str]:
    """Every object key under the blob store's prefix."""
    import obstore

    from vstream.blobstore import S3BlobStore, open_blob_store

    inner = open_blob_store(blobs).inner
    assert isinstance(inner, S3BlobStore)
    return [meta["path"] for chunk in obstore.list(inner.store) for meta in chunk]
