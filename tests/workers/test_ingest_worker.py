"""Ingest worker against the real Kafka broker and Redis server."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer

from tests.conftest import start_worker, wait_for
from tests.helpers.ingest import submit
from tests.media_fixtures import sample
from vstream.blobstore import LocalBlobStore
from vstream.config import Settings
from vstream.jobs import JobStore
from vstream.kafka_io import ensure_topics, make_consumer
from vstream.names import Keys, Topics
from vstream.schema import ClipMessage, ClipParams, IngestRequest, decode_clip

pytestmark = pytest.mark.integration
PARAMS = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)


class ClipCollector:
    """A consumer-group reader of the clips topic that keeps arrival order per stream."""

    def __init__(self, s: Settings) -> None:
        ensure_topics(s.kafka, {Topics(s.kafka.topic_prefix).clips: s.kafka.clip_partitions})
        self.consumer: KafkaConsumer = make_consumer(
            s.kafka, "test-collector", Topics(s.kafka.topic_prefix).clips
        )
        self.blobs = LocalBlobStore(s.blobs.root)
        self.by_stream: dict[str, list[ClipMessage]] = defaultdict(list)

    def poll(self) -> None:
        for records in self.consumer.poll(timeout_ms=300).values():
            for r in records:
                msg = decode_clip(r.value)
                if msg.payload_ref:
                    msg = decode_clip(self.blobs.get(msg.payload_ref))
                assert r.key.decode() == msg.stream_id
                self.by_stream[msg.stream_id].append(msg)
        self.consumer.commit()

    def drain(self, quiet_s: float = 1.5) -> None:
        """Poll until nothing has arrived for `quiet_s`: one poll may return only part of the backlog."""
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            before = sum(map(len, self.by_stream.values()))
            self.poll()
            if sum(map(len, self.by_stream.values())) != before:
                quiet_since = time.monotonic()

    def until(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        def step() -> bool:
            self.poll()
            return bool(predicate())

        wait_for(step, timeout, what, interval=0)

    def indices(self, stream: str) -> list[int]:
        return [m.index for m in self.by_stream[stream]]

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """A real HTTP MPEG-TS live stream served by ffmpeg on loopback, paced at real time."""
    src = sample(tmp_path, "live_src.mp4", seconds=14, width=320, height=180)
    port = 18000 + (hash(tmp_path) % 1000)
    url = f"http://127.0.0.1:{port}/live.ts"
    proc = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-i", str(src), "-c", "copy", "-f", "mpegts", "-listen", "1", url]
    )
    time.sleep(0.5)
    yield url
    proc.kill()
    proc.wait()


def test_file_and_live_stream_arrive_exactly_once_and_in_order(
    settings: Settings, tmp_path: Path, live_server: str
) -> None:
    video = sample(tmp_path, "match.mp4", seconds=20, width=640, height=360)
    collector = ClipCollector(settings)
    worker = start_worker(settings, "ingest", tmp_path / "worker.log")
    try:
        submit(
            settings,
            IngestRequest(job_id="file-1", stream_id="match", source=str(video), params=PARAMS),
            IngestRequest(job_id="live-1", stream_id="cam", source=live_server, params=PARAMS),
        )
        collector.until(
            lambda: (
                collector.by_stream["match"]
                and collector.by_stream["match"][-1].last
                and len(collector.by_stream["cam"]) >= 3
            ),
            90,
            "the file's last clip and 3 live clips",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        collector.close()
    log = (tmp_path / "worker.log").read_text()
    assert worker.returncode == 0, log
    assert collector.indices("match") == list(range(7)), log  # 20 s, step 3 s
    cam = collector.indices("cam")
    assert cam == list(range(len(cam)))
    live = collector.by_stream["cam"][0]
    assert live.live and live.wall_timestamps is not None and live.clock == "pts"
    assert abs(live.wall_timestamps[0] - time.time()) < 120
    assert "ingest job=file-1 stream=match outcome=done" in log
    keys, r = Keys(settings.redis.key_prefix), redis.Redis.from_url(settings.redis.url)
    assert (r.hget(keys.job("file-1"), "live"), r.hget(keys.job("live-1"), "live")) == (b"0", b"1")


def test_duplicate_request_is_not_ingested_twice(settings: Settings, tmp_path: Path) -> None:
    video = sample(tmp_path, "short.mp4", seconds=5, width=320, height=180)
    collector = ClipCollector(settings)
    worker = start_worker(settings, "ingest", tmp_path / "worker.log")
    req = IngestRequest(job_id="dup", stream_id="short", source=str(video), params=PARAMS)
    try:
        submit(settings, req, req)
        collector.until(
            lambda: collector.by_stream["short"] and collector.by_stream["short"][-1].last,
            60,
            "the last clip",
        )
        time.sleep(2)
        collector.poll()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        collector.close()
    assert collector.indices("short") == [0, 1]


def test_sigkill_mid_file_then_restart_leaves_no_gap(settings: Settings, tmp_path: Path) -> None:
    video = sample(tmp_path, "long.mp4", seconds=600, fps=5, width=320, height=180, gop=10, bframes=0)
    jobs = JobStore(redis.Redis.from_url(settings.redis.url), Keys(settings.redis.key_prefix), 3)
    collector = ClipCollector(settings)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, "ingest", log)
    req = IngestRequest(job_id="long", stream_id="lecture", source=str(video), params=PARAMS)
    try:
        submit(settings, req)
        collector.until(lambda: len(collector.by_stream["lecture"]) >= 20, 60, "20 clips")
        state = jobs.get("long")
        assert state is not None and state.status == "running", "the kill must land mid-file"
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed_at = len(collector.by_stream["lecture"])
        worker = start_worker(settings, "ingest", log)
        collector.until(lambda: collector.by_stream["lecture"][-1].last, 120, "the last clip after restart")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        collector.close()
    seen = collector.indices("lecture")
    n = 200  # 600 s, step 3 s
    assert sorted(set(seen)) == list(range(n)), "no gap"
    duplicates = len(seen) - n
    assert duplicates <= 10, (
        f"resumed from the last acknowledged clip, not from the start ({duplicates} repeats)"
    )
    assert seen[:killed_at] == list(range(killed_at))
    done = re.search(r"job=long stream=lecture outcome=done .*resumed_from=(\d+)", log.read_text())
    assert done is not None and int(done.group(1)) > 0


def test_pause_stops_a_running_job_and_resume_continues_it(settings: Settings, tmp_path: Path) -> None:
    video = sample(tmp_path, "long.mp4", seconds=600, fps=5, width=320, height=180, gop=10, bframes=0)
    jobs = JobStore(redis.Redis.from_url(settings.redis.url), Keys(settings.redis.key_prefix), 3)
    collector = ClipCollector(settings)
    worker = start_worker(settings, "ingest", tmp_path / "worker.log")
    try:
        submit(settings, IngestRequest(job_id="p", stream_id="talk", source=str(video), params=PARAMS))
        collector.until(lambda: len(collector.by_stream["talk"]) >= 5, 60, "5 clips")
        jobs.set_status("p", "paused")
        wait_for(
            lambda: "job=p stream=talk outcome=paused" in (tmp_path / "worker.log").read_text(),
            30,
            "the job's thread to end",
        )
        collector.drain()
        paused_at = len(collector.by_stream["talk"])
        time.sleep(2)
        collector.drain()
        assert len(collector.by_stream["talk"]) == paused_at, "no clips while paused"
        state = jobs.get("p")
        assert state is not None and state.status == "paused"
        jobs.set_status("p", "queued")  # what POST /v1/jobs/{id}/resume does
        collector.until(lambda: collector.by_stream["talk"][-1].last, 120, "the last clip after resuming")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        collector.close()
    assert sorted(set(collector.indices("talk"))) == list(range(200))


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_source_credentials_reach_no_log_job_view_or_error_record(settings: Settings, tmp_path: Path) -> None:
    """Issue 12 item 9: a failing source URL with user:pass is redacted wherever its error goes."""
    import json

    sources = {
        "cred-rtsp": f"rtsp://user:secret@127.0.0.1:{_closed_port()}/x",
        "cred-https": f"https://user:secret@127.0.0.1:{_closed_port()}/f.mp4",
    }
    topics = Topics(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, {topics.ingest_errors: 1})
    errors = make_consumer(settings.kafka, "test-errors", topics.ingest_errors)
    log = tmp_path / "worker.log"
    fast = {"VSTREAM_DECODE__RECONNECT_INITIAL_S": "0.2", "VSTREAM_DECODE__RECONNECT_GIVE_UP_S": "1"}
    worker = start_worker(settings, "ingest", log, fast)
    records: list[dict[str, object]] = []
    try:
        submit(
            settings,
            *(IngestRequest(job_id=j, stream_id=j, source=src, params=PARAMS) for j, src in sources.items()),
        )

        def both_failed() -> bool:
            for batch in errors.poll(timeout_ms=500).values():
                records.extend(json.loads(r.value) for r in batch)
            return {str(r["job_id"]) for r in records} >= set(sources)

        wait_for(both_failed, 90, "an error record for each job", interval=0)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        errors.close()
    text = log.read_text()
    jobs = JobStore(redis.Redis.from_url(settings.redis.url), Keys(settings.redis.key_prefix), 3)
    for job_id in sources:
        state = jobs.get(job_id)
        assert state is not None and state.error, f"{job_id} recorded its error"
        assert "secret" not in state.error and "user:" not in state.error
        assert "127.0.0.1" in state.error, "the error still names the source"
    assert records and all("secret" not in json.dumps(r) for r in records), records
    assert "secret" not in text, [line for line in text.splitlines() if "secret" in line]
    assert "cannot connect to rtsp://127.0.0.1" in text or "cannot open rtsp://127.0.0.1" in text
