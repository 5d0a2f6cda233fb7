"""ingest -> infer on the 3-broker cluster (RF 3, min.insync.replicas 2): a broker SIGKILLed mid-run and
restarted loses no clip and duplicates none, on the clips topic or in the results."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import records, start_worker, wait_for
from tests.helpers.distributed import (
    clip_ids_in_topic,
    cluster,
    delete_topics,
    partition_leader,
    streams_on_partitions,
    submit_jobs,
    topic_replication,
)
from tests.media_fixtures import sample
from vstream.config import Settings
from vstream.kafka_io import ensure_topics
from vstream.names import Keys, Topics
from vstream.schema import ClipParams, IngestRequest

# One rerun: these wait on Kafka group assignment (and, here, a leader election) on 2 shared cores, and
# timed out once in ~2 full runs; a second failure in a row still fails the suite.
pytestmark = [pytest.mark.integration, pytest.mark.flaky(reruns=1)]
PARAMS = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)
REPLICATION = {"VSTREAM_KAFKA__REPLICATION_FACTOR": "3", "VSTREAM_KAFKA__MIN_INSYNC_REPLICAS": "2"}


@pytest.fixture
def replicated(settings: Settings, kafka_cluster: str) -> Iterator[Settings]:
    kafka = settings.kafka.model_copy(
        update={"bootstrap": kafka_cluster, "replication_factor": 3, "min_insync_replicas": 2}
    )
    s = settings.model_copy(update={"kafka": kafka})
    yield s
    delete_topics(s.kafka)


def start(s: Settings, kind: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    return start_worker(s, kind, log, {**REPLICATION, **env})


def test_a_broker_killed_mid_run_loses_and_duplicates_no_clip(
    replicated: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    s, keys, topics = replicated, Keys(replicated.redis.key_prefix), Topics(replicated.kafka.topic_prefix)
    ensure_topics(s.kafka, {topics.clips: s.kafka.clip_partitions})
    rep = topic_replication(s.kafka, topics.clips)
    assert (rep.replicas, rep.min_insync) == (3, 2)
    (stream,) = streams_on_partitions(s.kafka.clip_partitions)[:1]  # the stream lives on partition 0
    script = tmp_path / "script.json"
    caption = "<think></think>A scripted caption."
    script.write_text(json.dumps({"delay_s": 0.3, "outputs": {"caption": caption}}))
    video = sample(tmp_path, "cam.mp4", seconds=60, width=320, height=180)
    n = 20  # 60 s, step 3 s
    model = {"VSTREAM_MODEL__TYPE": "scripted", "VSTREAM_MODEL__MODEL": str(script)}
    ingest = start(s, "ingest", tmp_path / "ingest.log")
    infer = start(s, "infer", tmp_path / "infer.log", **model, VSTREAM_MODEL__MAX_BATCH="2")
    victim = partition_leader(s.kafka, topics.clips, 0)

    def done() -> int:
        return len(records(redis_client, keys.results(stream)))

    try:
        submit_jobs(
            s.kafka,
            IngestRequest(job_id="j", stream_id=stream, source=str(video), params=PARAMS, task="caption"),
        )
        wait_for(lambda: done() >= 4, 180, "4 results before the kill")
        cluster("kill", str(victim))
        before = done()
        assert before < n, "the kill must land mid-run"
        wait_for(lambda: done() >= before + 3, 180, "progress on two brokers")
        cluster("start", str(victim))
        wait_for(lambda: done() >= n, 240, "every result after the restart")
    finally:
        for proc in (ingest, infer):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        cluster("start")  # the next test finds three brokers even if this one failed early
    got = records(redis_client, keys.results(stream))
    log = (tmp_path / "infer.log").read_text()
    assert sorted(r["index"] for r in got) == list(range(n)), log[-3000:]
    on_topic = Counter(clip_ids_in_topic(s.kafka, topics.clips, n))
    assert len(on_topic) == n and set(on_topic.values()) == {1}, f"clips on the topic: {on_topic}"
    assert log.count("outcome=written") == n, "each clip analysed once"
