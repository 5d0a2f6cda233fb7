"""Claim-check stores: the local directory, the real S3 (s3proxy), expiry, start-up checks, and a large
clip through Kafka with its frames in S3."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer
from pydantic import SecretStr, ValidationError

from tests.helpers.distributed import s3_blob_settings
from vstream.analysis.analyzer import resolve
from vstream.blobstore import BlobError, LocalBlobStore, SweepingBlobStore, open_blob_store
from vstream.config import BlobSettings, KafkaSettings, Settings
from vstream.encode import encode_jpeg
from vstream.kafka_io import ClipPublisher, ensure_topics, make_consumer, make_producer
from vstream.names import Topics
from vstream.schema import ClipMessage, ClipParams, clip_id_for, decode_clip

PARAMS = ClipParams()


def noisy_clip(index: int) -> ClipMessage:
    rng = np.random.default_rng(index)
    frames = [encode_jpeg(rng.integers(0, 255, (252, 448, 3), np.uint8), 95) for _ in range(16)]
    return ClipMessage(
        stream_id="cam",
        clip_id=clip_id_for("cam", PARAMS, index),
        index=index,
        params=PARAMS,
        t_start=index * 6.0,
        t_end=index * 6.0 + 8,
        timestamps=[index * 6 + k / 2 for k in range(16)],
        clock="pts",
        width=448,
        height=252,
        frames=frames,
    )


# ----------------------------------------------------------------------------- settings, local store


def test_blob_url_must_be_file_or_s3() -> None:
    with pytest.raises(ValidationError, match="file:///dir or s3://bucket"):
        BlobSettings(url="http://example.com/blobs")
    with pytest.raises(ValidationError, match="file:///dir or s3://bucket"):
        BlobSettings(url="s3://")
    assert BlobSettings(url="s3://bucket/some/prefix").url == "s3://bucket/some/prefix"


def test_min_insync_replicas_cannot_exceed_the_replication_factor() -> None:
    with pytest.raises(ValidationError, match="exceeds replication_factor"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)
    assert KafkaSettings(replication_factor=3, min_insync_replicas=2).min_insync_replicas == 2


def test_the_root_directory_stays_the_default_and_file_urls_pick_another(tmp_path: Path) -> None:
    default = open_blob_store(BlobSettings(root=tmp_path / "root"))
    ref = default.put("cam/a.vsc", b"one")
    assert ref == (tmp_path / "root" / "cam" / "a.vsc").as_uri() and default.get(ref) == b"one"
    other = open_blob_store(BlobSettings(root=tmp_path / "root", url=(tmp_path / "elsewhere").as_uri()))
    assert other.get(other.put("cam/b.vsc", b"two")) == b"two"
    assert (tmp_path / "elsewhere" / "cam" / "b.vsc").read_bytes() == b"two"


def test_local_sweep_removes_only_blobs_older_than_the_ttl(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    old, new = store.put("cam/old.vsc", b"o"), store.put("cam/new.vsc", b"n")
    past = time.time() - 3600
    os.utime(tmp_path / "cam" / "old.vsc", (past, past))
    assert store.sweep(older_than_s=600) == 1
    with pytest.raises(BlobError, match="missing"):
        store.get(old)
    assert store.get(new) == b"n"
    store.delete(new)
    store.delete(new)  # settling twice is harmless
    assert not (tmp_path / "cam" / "new.vsc").exists()


def test_writes_trigger_at_most_one_sweep_per_interval(tmp_path: Path) -> None:
    store = SweepingBlobStore(LocalBlobStore(tmp_path), ttl_s=600, interval_s=3600)
    store.inner.put("cam/old.vsc", b"o")
    past = time.time() - 3600
    os.utime(tmp_path / "cam" / "old.vsc", (past, past))
    store.put("cam/new.vsc", b"n")  # the first write of a process sweeps
    first = store.sweeper
    assert first is not None
    first.join(10)
    assert not (tmp_path / "cam" / "old.vsc").exists(), "the due sweep removed the expired blob"
    os.utime(tmp_path / "cam" / "new.vsc", (past, past))
    store.put("cam/another.vsc", b"x")
    assert store.sweeper is first and store.maybe_sweep() is None, "the next sweep waits for the interval"
    assert (tmp_path / "cam" / "new.vsc").exists()


# ------------------------------------------------------------------------------------ real S3


@pytest.mark.integration
def test_s3_put_get_delete_and_missing_blob(s3_blobs: BlobSettings) -> None:
    store = open_blob_store(s3_blobs)
    data = os.urandom(3 * 1024 * 1024)  # over Kafka's limit, as claim-checked clips are
    ref = store.put("cam/c1.vsc", data)
    assert ref == f"{s3_blobs.url}/cam/c1.vsc"
    assert store.get(ref) == data
    store.delete(ref)
    store.delete(ref)  # settling twice is harmless
    with pytest.raises(BlobError, match="missing"):
        store.get(ref)


@pytest.mark.integration
def test_s3_refuses_references_outside_its_bucket_and_prefix(s3_blobs: BlobSettings) -> None:
    store = open_blob_store(s3_blobs)
    for ref in (
        "s3://other-bucket/x/cam/c.vsc",
        "s3://vstream/not-my-prefix/cam/c.vsc",
        "file:///etc/passwd",
    ):
        with pytest.raises(BlobError, match="outside the store"):
            store.get(ref)
    with pytest.raises(BlobError, match="bad blob key"):
        store.put("../escape", b"x")


@pytest.mark.integration
def test_s3_blobs_expire_by_ttl_through_the_sweeping_writer(s3_blobs: BlobSettings) -> None:
    store = open_blob_store(s3_blobs.model_copy(update={"ttl_s": 2.0, "sweep_interval_s": 3600.0}))
    old = store.inner.put("cam/old.vsc", b"o")  # written without sweeping
    time.sleep(3.5)  # S3 last-modified times have one-second resolution
    new = store.put("cam/new.vsc", b"n")  # a write starts the first sweep
    thread = store.sweeper
    assert thread is not None
    thread.join(30)
    with pytest.raises(BlobError, match="missing"):
        store.get(old)
    assert store.get(new) == b"n", "a blob younger than the TTL stays"


@pytest.mark.integration
def test_bad_s3_credentials_or_bucket_fail_at_start_up_in_one_line(s3_blobs: BlobSettings) -> None:
    wrong_key = s3_blobs.model_copy(update={"s3_secret_access_key": SecretStr("wrong")})
    with pytest.raises(BlobError) as bad_key:
        open_blob_store(wrong_key)
    assert "unusable" in str(bad_key.value) and "\n" not in str(bad_key.value)
    assert "wrong" not in str(bad_key.value), "the secret is never printed"
    no_bucket = s3_blob_settings("p").model_copy(update={"url": "s3://no-such-bucket/p"})
    with pytest.raises(BlobError, match=r"no-such-bucket.*unusable") as missing:
        open_blob_store(no_bucket)
    assert "\n" not in str(missing.value)


@pytest.mark.integration
def test_a_large_clip_crosses_kafka_with_its_frames_in_s3(settings: Settings, s3_blobs: BlobSettings) -> None:
    topic = Topics(settings.kafka.topic_prefix).clips
    ensure_topics(settings.kafka, {topic: 1})
    blobs = open_blob_store(s3_blobs)
    producer: KafkaProducer = make_producer(settings.kafka)
    publisher = ClipPublisher(producer, topic, blobs, settings.kafka.max_message_bytes)
    sent = noisy_clip(0)
    assert sent.payload_bytes > settings.kafka.max_message_bytes
    publisher.send(sent)
    publisher.flush(timeout_s=30)
    producer.close()
    consumer = make_consumer(settings.kafka, "test-s3-claim", topic)
    got: list[ClipMessage] = []
    for _ in range(50):
        for recs in consumer.poll(timeout_ms=300).values():
            got += [decode_clip(r.value) for r in recs]
        if got:
            break
    consumer.close()
    (header,) = got
    assert header.frames == [] and header.payload_ref is not None
    assert header.payload_ref.startswith(f"{s3_blobs.url}/cam/")
    assert resolve(header, open_blob_store(s3_blobs)) == sent, "another host's store reads the same clip"
    blobs.delete(header.payload_ref)
    with pytest.raises(BlobError, match="missing"):
        blobs.get(header.payload_ref)
