"""Shared fixtures. Integration tests use the real Kafka and Redis started by deploy/local/services.sh,
each run under its own topic prefix and key prefix, removed afterwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import redis

from vstream.config import BlobSettings, KafkaSettings, RedisSettings, Settings
from vstream.names import Keys, Topics
from vstream.redis_conn import connect, delete_matching

KAFKA = os.environ.get("VSTREAM_TEST_KAFKA", "127.0.0.1:9092")
REDIS = os.environ.get("VSTREAM_TEST_REDIS", "redis://127.0.0.1:6379/15")
# any node of the 3-master cluster of deploy/local/redis-cluster.sh (a cluster has only database 0)
REDIS_CLUSTER = os.environ.get("VSTREAM_TEST_REDIS_CLUSTER", "redis://127.0.0.1:7001/0")
T = TypeVar("T")


def _reachable(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def services() -> None:
    """Fail (never skip) when the servers are down: CI must run these tests for real."""
    redis_host = REDIS.split("//", 1)[1].split("/", 1)[0]
    missing = [name for name, addr in (("Kafka", KAFKA), ("Redis", redis_host)) if not _reachable(addr)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not reachable: run deploy/local/services.sh start")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of a module marked ``redis_cluster`` run twice: on the single server and on the cluster; the
    rest of the suite stays on the single server."""
    if "redis_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("redis_cluster"):
        metafunc.parametrize("redis_backend", ["single", "cluster"], indirect=True)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    return cast(str, getattr(request, "param", "single"))


@pytest.fixture
def redis_settings(redis_backend: str) -> RedisSettings:
    run = uuid.uuid4().hex[:8]
    if redis_backend == "cluster":
        host = REDIS_CLUSTER.split("//", 1)[1].split("/", 1)[0]
        if not _reachable(host):
            pytest.fail(f"Redis Cluster not reachable at {host}: run deploy/local/services.sh start")
        return RedisSettings(url=REDIS_CLUSTER, key_prefix=f"test:{run}:", cluster=True)
    return RedisSettings(url=REDIS, key_prefix=f"test:{run}:")


@pytest.fixture
def settings(services: None, tmp_path: Path, redis_settings: RedisSettings) -> Iterator[Settings]:
    run = redis_settings.key_prefix.split(":")[1]
    s = Settings(
        kafka=KafkaSettings(bootstrap=KAFKA, topic_prefix=f"test.{run}.", clip_partitions=2),
        redis=redis_settings,
        blobs=BlobSettings(root=tmp_path / "blobs"),
        job_lease_s=3.0,
    )
    yield s
    client = connect(s.redis)
    try:
        delete_matching(client, Keys(s.redis.key_prefix).pattern)
    finally:
        client.close()
    _delete_topics(s)


def _delete_topics(s: Settings) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=KAFKA)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(s.kafka.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def settings_env(s: Settings) -> dict[str, str]:
    """The same settings as VSTREAM_* variables, for worker subprocesses."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("VSTREAM_")},
        "VSTREAM_KAFKA__BOOTSTRAP": s.kafka.bootstrap,
        "VSTREAM_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
        "VSTREAM_KAFKA__CLIP_PARTITIONS": str(s.kafka.clip_partitions),
        "VSTREAM_REDIS__URL": s.redis.url,
        "VSTREAM_REDIS__KEY_PREFIX": s.redis.key_prefix,
        "VSTREAM_REDIS__CLUSTER": "true" if s.redis.cluster else "false",
        "VSTREAM_BLOBS__ROOT": str(s.blobs.root),
        "VSTREAM_JOB_LEASE_S": str(s.job_lease_s),
        "PYTHONUNBUFFERED": "1",
    }


def start_worker(
    s: Settings, kind: str, log: Path, extra_env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vstream.cli", "worker", kind],
        env={**settings_env(s), **(extra_env or {})},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def records(r: redis.Redis, index: str, key_of: Callable[[str], str] = str) -> list[dict[str, Any]]:
    """The JSON records a sorted-set index points at, in index order (``key_of`` maps a member to its key)."""
    members = cast("list[bytes]", r.zrange(index, 0, -1))
    return [json.loads(cast("bytes | None", r.get(key_of(m.decode()))) or b"{}") for m in members]


@pytest.fixture
def topics(settings: Settings) -> Topics:
    return Topics(settings.kafka.topic_prefix)


@pytest.fixture
def redis_client(settings: Settings) -> redis.Redis:
    """A client of the test's Redis: the single server, or the cluster in ``redis_cluster`` modules."""
    return connect(settings.redis)


@pytest.fixture
def s3_blobs(services: None) -> Iterator[BlobSettings]:
    """Blob settings on the real S3 (deploy/local/s3.sh) under a prefix of this test, emptied afterwards."""
    from tests.helpers.distributed import S3_ENDPOINT, reachable, s3_blob_settings
    from vstream.blobstore import open_blob_store

    if not reachable("127.0.0.1", int(S3_ENDPOINT.rsplit(":", 1)[1])):
        pytest.fail(f"S3 not reachable at {S3_ENDPOINT}: run deploy/local/services.sh start")
    blobs = s3_blob_settings(f"test-{uuid.uuid4().hex[:8]}")
    yield blobs
    open_blob_store(blobs).sweep(older_than_s=-3600)  # everything under the prefix


@pytest.fixture(scope="session")
def kafka_cluster() -> str:
    """The 3-broker cluster of deploy/local/kafka-cluster.sh (CI starts it with the other services;
    started here once if it is not up); returns its bootstrap list."""
    from tests.helpers.distributed import CLUSTER_BOOTSTRAP, cluster

    cluster("start")
    return CLUSTER_BOOTSTRAP
