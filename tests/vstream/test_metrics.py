"""Consumer lag as /metrics reports it, measured against the real broker."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for
from vstream.config import Settings
from vstream.kafka_io import ensure_topics, make_consumer, make_producer
from vstream.metrics import CachedLag
from vstream.names import Topics

pytestmark = pytest.mark.integration


def test_consumer_lag_is_what_the_group_has_not_committed(settings: Settings, topics: Topics) -> None:
    ensure_topics(settings.kafka, {topics.clips: 2})
    producer = make_producer(settings.kafka)
    for i in range(5):
        producer.send(topics.clips, key=f"cam-{i % 2}".encode(), value=b"x")
    producer.flush()
    producer.close()
    consumer = make_consumer(settings.kafka, topics.infer_group, topics.clips, auto_offset_reset="earliest")
    try:
        got: list[object] = []

        def poll() -> bool:
            got.extend(m for batch in consumer.poll(500).values() for m in batch)
            return len(got) >= 5

        wait_for(poll, 30, "the 5 messages")
        consumer.commit()
    finally:
        consumer.close()
    lag = CachedLag(settings.kafka.bootstrap, topics.lag_groups(), ttl_s=0)
    assert lag()[(topics.infer_group, topics.clips)] == 0
    producer = make_producer(settings.kafka)
    for _ in range(3):
        producer.send(topics.clips, key=b"cam-0", value=b"y")
    producer.flush()
    producer.close()
    measured = lag()
    assert measured[(topics.infer_group, topics.clips)] == 3
    assert measured[(topics.ingest_group, topics.ingest_requests)] == 0, "a group with no commits lags 0"


def test_groups_are_named_per_deployment() -> None:
    a, b = Topics("site-a."), Topics("site-b.")
    assert a.infer_group != b.infer_group and a.ingest_group != b.ingest_group
    assert a.infer_group.startswith("site-a.") and set(a.lag_groups().values()) <= set(a.all())
