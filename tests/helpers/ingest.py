"""Feeding the ingest worker through its real Kafka topic (shared by the worker tests)."""

from __future__ import annotations

from kafka import KafkaProducer

from vstream.config import Settings
from vstream.names import Topics
from vstream.schema import IngestRequest


def submit(s: Settings, *reqs: IngestRequest) -> None:
    """Produce ingest requests the way `POST /v1/jobs` does, and wait until the broker has them."""
    producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap)
    try:
        for req in reqs:
            producer.send(
                Topics(s.kafka.topic_prefix).ingest_requests,
                key=req.stream_id.encode(),
                value=req.model_dump_json().encode(),
            ).get(timeout=30)
    finally:
        producer.close()
