"""Clip publishing against the real broker: inline clips and the claim-check path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from vstream.blobstore import BlobError, LocalBlobStore
from vstream.config import Settings
from vstream.encode import encode_jpeg
from vstream.kafka_io import ClipPublisher, ensure_topics, make_consumer, make_producer
from vstream.names import Topics
from vstream.schema import ClipMessage, ClipParams, clip_id_for, decode_clip

pytestmark = pytest.mark.integration
PARAMS = ClipParams()


def clip(index: int, noisy: bool) -> ClipMessage:
    rng = np.random.default_rng(index)
    shape = (252, 448, 3)
    frames = [
        encode_jpeg(rng.integers(0, 255, shape, np.uint8) if noisy else np.full(shape, 90, np.uint8), 95)
        for _ in range(16)
    ]
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


def test_small_clips_go_inline_and_large_ones_through_the_blob_store(
    settings: Settings, tmp_path: Path
) -> None:
    topic = Topics(settings.kafka.topic_prefix).clips
    ensure_topics(settings.kafka, {topic: 1})
    blobs = LocalBlobStore(tmp_path / "blobs")
    producer: KafkaProducer = make_producer(settings.kafka)
    publisher = ClipPublisher(producer, topic, blobs, settings.kafka.max_message_bytes)
    sent = [clip(0, noisy=False), clip(1, noisy=True), clip(2, noisy=False)]
    assert sent[1].payload_bytes > settings.kafka.max_message_bytes, "the noisy clip must exceed the limit"
    for msg in sent:
        publisher.send(msg)
    publisher.flush(timeout_s=30)
    producer.close()
    assert publisher.acked_index == 2 and publisher.claim_checked == 1

    consumer = make_consumer(settings.kafka, "test-claim", topic)
    got: list[ClipMessage] = []
    for _ in range(50):
        for records in consumer.poll(timeout_ms=300).values():
            got += [decode_clip(r.value) for r in records]
        if len(got) == 3:
            break
    consumer.close()
    assert [m.index for m in got] == [0, 1, 2]
    assert got[0].payload_ref is None and got[0].frames == sent[0].frames
    assert got[1].frames == [] and got[1].payload_ref is not None
    assert decode_clip(blobs.get(got[1].payload_ref)) == sent[1]


def test_blob_store_refuses_references_outside_its_root(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    ref = store.put("cam/a.vsc", b"data")
    assert store.get(ref) == b"data"
    with pytest.raises(BlobError, match="outside"):
        store.get((tmp_path / "secret").as_uri())
    with pytest.raises(BlobError):
        store.put("../escape", b"x")
    with pytest.raises(BlobError, match="missing"):
        store.get((tmp_path / "blobs" / "cam" / "gone.vsc").as_uri())


def test_topics_are_created_with_the_configured_replication_settings(settings: Settings) -> None:
    from tests.helpers.distributed import topic_replication

    topic = Topics(settings.kafka.topic_prefix).clips
    ensure_topics(settings.kafka, {topic: 2})
    ensure_topics(settings.kafka, {topic: 2})  # idempotent
    rep = topic_replication(settings.kafka, topic)
    assert (rep.replicas, rep.min_insync) == (1, 1)  # the single local broker; RF 3 in test_replication
