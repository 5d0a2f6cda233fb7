"""Kafka clients configured once: durable producer, topic creation, consumers, the clip publisher."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from vstream.blobstore import BlobStore
from vstream.config import KafkaSettings
from vstream.schema import ClipMessage, encode_clip

logger = logging.getLogger(__name__)

# Record batch + record headers around one message; keeps a clip at the limit under the broker's cap.
_RECORD_OVERHEAD = 512


def make_producer(kafka: KafkaSettings, client_id: str = "vstream") -> KafkaProducer:
    """acks=all + idempotence: a retried send is never written twice, and nothing is acked half-written."""
    return KafkaProducer(
        bootstrap_servers=kafka.bootstrap.split(","),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        retries=2**31 - 1,
        delivery_timeout_ms=120_000,
        request_timeout_ms=kafka.request_timeout_ms,
        max_in_flight_requests_per_connection=5,
        linger_ms=5,
        max_request_size=kafka.max_message_bytes,
        compression_type=None,  # JPEG does not compress
    )


def make_consumer(kafka: KafkaSettings, group_id: str, *topics: str, **overrides: Any) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap.split(","),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": kafka.max_message_bytes + _RECORD_OVERHEAD,
        "fetch_max_bytes": max(52_428_800, kafka.max_message_bytes * 2),
        "request_timeout_ms": max(kafka.request_timeout_ms, 305_000),
        # A member that joined while a new topic's partitions were not yet in its metadata is assigned
        # nothing until the next refresh: 10 s instead of the default 5 min (seen on a 3-broker cluster).
        "metadata_max_age_ms": 10_000,
    }
    config.update(overrides)
    consumer = KafkaConsumer(*topics, **config)
    if topics:
        await_partitions(consumer, topics)
    return consumer


def await_partitions(consumer: KafkaConsumer, topics: Sequence[str], timeout_s: float = 60.0) -> None:
    """Block until the consumer's own metadata lists every topic's partitions, before its first poll joins
    the group: a member that joins while they are missing (a new topic, still spreading across a 3-broker
    cluster) is assigned nothing, and kafka-python does not rejoin when they appear (seen: idle 3 min).
    Call it after ``subscribe`` and before the first ``poll``. Gives up quietly after ``timeout_s``, so a
    topic created later is still consumed once metadata catches up on a rebalance."""
    deadline = time.monotonic() + timeout_s
    missing = list(topics)
    while missing and time.monotonic() < deadline:
        missing = [t for t in missing if not consumer.partitions_for_topic(t)]
        if missing:
            time.sleep(0.2)
    if missing:
        logger.warning("no partition metadata for %s after %.0f s; joining anyway", missing, timeout_s)


def ensure_topics(kafka: KafkaSettings, topics: dict[str, int]) -> None:
    """Create missing topics (name -> partitions) with a message limit matching ours and the configured
    replication; idempotent. Existing topics are left as they are (changing RF is an operator's job)."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap.split(","), client_id="vstream-admin")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, partitions, kafka.replication_factor, topic_configs=_topic_configs(kafka))
            for name, partitions in topics.items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                admin.create_topics(new)
            _wait_for_topics(admin, [t.name for t in new])
    finally:
        admin.close()


def _topic_configs(kafka: KafkaSettings) -> dict[str, str]:
    return {
        "max.message.bytes": str(kafka.max_message_bytes),
        "min.insync.replicas": str(kafka.min_insync_replicas),
        # an out-of-sync replica never becomes leader: an acknowledged clip is never rolled back
        "unclean.leader.election.enable": "false",
    }


def _wait_for_topics(admin: KafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Until every partition has a leader: a consumer that subscribes earlier can be assigned nothing
    and stay idle until its next metadata refresh (minutes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if set(names) <= set(admin.list_topics()) and _all_led(admin, names):
            return
        time.sleep(0.2)
    raise KafkaError(f"topics not ready after {timeout_s:.0f} s: {names}")


def _all_led(admin: KafkaAdminClient, names: list[str]) -> bool:
    try:
        described = admin.describe_topics(names)
    except KafkaError:
        return False
    return all(
        t.get("error_code", 0) == 0
        and t["partitions"]
        and all(part.get("leader_id", -1) >= 0 for part in t["partitions"])
        for t in described
    )


class ClipPublisher:
    """Sends clips keyed by stream; clips over the size limit go through the claim-check store.

    Tracks delivery in order, so :attr:`acked_index` is the highest index below which every clip is
    confirmed by all in-sync replicas: the safe point to resume from after a crash.
    """

    def __init__(self, producer: KafkaProducer, topic: str, blobs: BlobStore, max_bytes: int) -> None:
        self.producer, self.topic, self.blobs = producer, topic, blobs
        self.limit = max_bytes - _RECORD_OVERHEAD
        self._pending: deque[tuple[int, Any]] = deque()
        self.acked_index = -1
        self.claim_checked = 0
        self.bytes_sent = 0

    def send(self, msg: ClipMessage) -> None:
        data = encode_clip(msg)
        if len(data) > self.limit:
            ref = self.blobs.put(f"{msg.stream_id}/{msg.clip_id}.vsc", data)
            data = encode_clip(msg.model_copy(update={"frames": [], "payload_ref": ref}))
            self.claim_checked += 1
        future = self.producer.send(self.topic, key=msg.stream_id.encode(), value=data)
        self.bytes_sent += len(data)
        self._pending.append((msg.index, future))
        self._collect()

    def _collect(self) -> None:
        while self._pending and self._pending[0][1].is_done:
            index, future = self._pending.popleft()
            future.get()  # raises the delivery error, if any: never a silent drop
            self.acked_index = index

    def flush(self, timeout_s: float | None = None) -> None:
        self.producer.flush(timeout=timeout_s)
        self._collect()
        if self._pending:
            raise KafkaError(f"{len(self._pending)} clips still unacknowledged after flush")
