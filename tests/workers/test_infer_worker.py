"""ingest -> Kafka -> infer worker -> Redis, against the real servers."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from tests.conftest import records, start_worker, wait_for
from tests.helpers.ingest import submit
from tests.media_fixtures import sample
from vstream.config import Settings
from vstream.kafka_io import ensure_topics, make_consumer
from vstream.names import Keys, Topics
from vstream.schema import ClipParams, IngestRequest

pytestmark = pytest.mark.integration
PARAMS = ClipParams(fps=2, clip_seconds=4, overlap_seconds=1)


def results(r: redis.Redis, keys: Keys, stream: str) -> list[dict[str, Any]]:
    return records(r, keys.results(stream))


def start_infer(s: Settings, log: Path, **model_env: str) -> subprocess.Popen[bytes]:
    return start_worker(s, "infer", log, {f"VSTREAM_MODEL__{k.upper()}": v for k, v in model_env.items()})


def test_tiny_model_gives_exactly_one_result_per_clip(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    keys = Keys(settings.redis.key_prefix)
    video = sample(tmp_path, "v.mp4", seconds=10, width=320, height=180)
    ingest = start_worker(settings, "ingest", tmp_path / "ingest.log")
    infer = start_infer(
        settings,
        tmp_path / "infer.log",
        type="transformers",
        model="tiny",
        max_new_tokens="12",
        max_batch="2",
    )
    try:
        submit(
            settings,
            IngestRequest(job_id="j", stream_id="v", source=str(video), params=PARAMS, task="caption"),
        )
        wait_for(lambda: len(results(redis_client, keys, "v")) >= 3, 240, "3 results")
        time.sleep(2)
    finally:
        for proc in (ingest, infer):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    log = (tmp_path / "infer.log").read_text()
    got = results(redis_client, keys, "v")
    assert sorted(r["index"] for r in got) == [0, 1, 2], log  # 10 s, step 3 s: windows at 0, 3, 6
    assert all(r["model_id"] == "tiny" and r["raw"] is not None for r in got)
    assert log.count("outcome=written") == 3, log
    assert infer.returncode == 0


def test_sigkill_and_restart_lose_no_clip_and_duplicate_nothing(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    keys = Keys(settings.redis.key_prefix)
    script = tmp_path / "script.json"
    answer = '<think></think>[{"label": "person walks", "start": 0.5, "end": 1.0, "confidence": 0.8}]'
    script.write_text(json.dumps({"delay_s": 0.4, "outputs": {"events": answer}}))
    video = sample(tmp_path, "cam.mp4", seconds=60, width=320, height=180)
    log = tmp_path / "infer.log"
    ingest = start_worker(settings, "ingest", tmp_path / "ingest.log")
    infer = start_infer(settings, log, type="scripted", model=str(script), max_batch="2", max_wait_s="0.1")
    n = 20  # 60 s, step 3 s
    try:
        submit(
            settings,
            IngestRequest(
                job_id="j",
                stream_id="cam",
                source=str(video),
                params=PARAMS,
                task="events",
                event_types=["person walks"],
            ),
        )
        wait_for(lambda: len(results(redis_client, keys, "cam")) >= 5, 120, "5 results")
        infer.send_signal(signal.SIGKILL)
        infer.wait()
        assert len(results(redis_client, keys, "cam")) < n, "the kill must land mid-run"
        infer = start_infer(
            settings, log, type="scripted", model=str(script), max_batch="2", max_wait_s="0.1"
        )
        wait_for(lambda: len(results(redis_client, keys, "cam")) >= n, 180, "all results after the restart")
        time.sleep(2)
    finally:
        for proc in (ingest, infer):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    got = results(redis_client, keys, "cam")
    assert sorted(r["index"] for r in got) == list(range(n)), "one result per clip, none lost"
    events = records(redis_client, keys.events("cam"), lambda e: keys.event("cam", e))
    # the same label every 3 s (within the join gap): one event through the whole run, closed at the end
    assert len(events) == 1, events
    (event,) = events
    assert event["state"] == "closed" and (event["start"], event["end"]) == (0.5, 58.0)
    assert len(event["clip_ids"]) == len(set(event["clip_ids"])) == n
    feed = cast("list[tuple[bytes, dict[bytes, bytes]]]", redis_client.xrange(keys.feed("cam")))
    kinds = [fields[b"kind"] for _, fields in feed]
    assert kinds.count(b"open") == 1 and kinds.count(b"close") == 1, "no duplicate alert after the restart"
    assert kinds.count(b"update") == n - 1, "each later clip extended the event exactly once"


def test_sigkill_with_many_clips_in_flight_loses_none_and_applies_each_once(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """40 clips of 4 streams, 16 in flight at once across both partitions, killed mid-run."""
    keys = Keys(settings.redis.key_prefix)
    script = tmp_path / "script.json"
    answer = '<think></think>[{"label": "ball", "start": 0.5, "end": 1.0, "confidence": 0.8}]'
    script.write_text(json.dumps({"delay_s": 0.8, "outputs": {"events": answer}}))
    streams, n = [f"s{k}" for k in range(4)], 10  # 30 s each, step 3 s
    video = sample(tmp_path, "v.mp4", seconds=30, width=320, height=180)
    log = tmp_path / "infer.log"
    env = {"type": "scripted", "model": str(script), "max_in_flight": "16"}
    ingest = start_worker(settings, "ingest", tmp_path / "ingest.log")
    infer = start_infer(settings, log, **env)

    def stored() -> int:
        return sum(len(results(redis_client, keys, s)) for s in streams)

    try:
        for s in streams:
            submit(
                settings,
                IngestRequest(
                    job_id=s,
                    stream_id=s,
                    source=str(video),
                    params=PARAMS,
                    task="events",
                    event_types=["ball"],
                ),
            )
        wait_for(lambda: stored() >= 12, 120, "12 results")
        infer.send_signal(signal.SIGKILL)
        infer.wait()
        assert stored() < len(streams) * n, "the kill must land mid-run"
        infer = start_infer(settings, log, **env)
        wait_for(lambda: stored() >= len(streams) * n, 180, "all results after the restart")
        time.sleep(2)
    finally:
        for proc in (ingest, infer):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    text = log.read_text()
    assert "16 clips at once" in text
    for s in streams:
        assert sorted(r["index"] for r in results(redis_client, keys, s)) == list(range(n)), s
        events = records(redis_client, keys.events(s), functools.partial(keys.event, s))
        assert len(events) == 1, (s, events)  # one label every 3 s: one event, each clip applied once
        assert len(events[0]["clip_ids"]) == len(set(events[0]["clip_ids"])) == n
        feed = cast("list[tuple[bytes, dict[bytes, bytes]]]", redis_client.xrange(keys.feed(s)))
        kinds = [fields[b"kind"] for _, fields in feed]
        assert kinds.count(b"open") == 1 and kinds.count(b"update") == n - 1, (s, kinds)
    assert "outcome=dead-letter" not in text


def test_a_clip_the_model_cannot_answer_is_dead_lettered_counted_and_the_worker_goes_on(
    settings: Settings, topics: Topics, tmp_path: Path, redis_client: redis.Redis
) -> None:
    keys = Keys(settings.redis.key_prefix)
    script = tmp_path / "script.json"  # answers events only: a caption clip fails, and retrying cannot help
    script.write_text(json.dumps({"outputs": {"events": "[]"}}))
    video = sample(tmp_path, "v.mp4", seconds=7, width=320, height=180)  # step 3 s: clips at 0 and 3 s
    log = tmp_path / "infer.log"
    ingest = start_worker(settings, "ingest", tmp_path / "ingest.log")
    infer = start_infer(settings, log, type="scripted", model=str(script), max_wait_s="0.1")
    ensure_topics(settings.kafka, {topics.dead_letter: 1})  # subscribe to a topic that exists
    dlq = make_consumer(
        settings.kafka, f"{topics.prefix}test-dlq", topics.dead_letter, auto_offset_reset="earliest"
    )
    dead: list[Any] = []

    def dead_letters(n: int) -> bool:
        dead.extend(m for batch in dlq.poll(500).values() for m in batch)
        return len(dead) >= n

    try:
        submit(
            settings,
            IngestRequest(job_id="bad", stream_id="bad", source=str(video), params=PARAMS, task="caption"),
        )
        wait_for(lambda: dead_letters(2), 120, "2 dead letters")
        submit(
            settings,
            IngestRequest(
                job_id="good",
                stream_id="good",
                source=str(video),
                params=PARAMS,
                task="events",
                event_types=["x"],
            ),
        )
        wait_for(lambda: len(results(redis_client, keys, "good")) >= 2, 120, "the next job's results")
    finally:
        dlq.close()
        for proc in (ingest, infer):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    headers = [dict(m.headers) for m in dead]
    assert all(b"no output for task 'caption'" in h["error"] for h in headers), headers
    assert sorted(json.loads(m.value)["index"] for m in dead) == [0, 1]
    assert results(redis_client, keys, "bad") == [], "nothing stored for a clip without an answer"
    progress = redis_client.hgetall(keys.analysis_progress("bad", PARAMS.params_hash))
    assert progress == {b"dead_lettered": b"2", b"complete": b"1"}
    assert infer.returncode == 0, log.read_text()
