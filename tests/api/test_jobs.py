"""Jobs API: submission to Redis and Kafka, idempotency, visibility, pagination, pause/resume/cancel."""

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from kafka.errors import KafkaTimeoutError

from tests.api.conftest import make_key
from vstream.config import Settings
from vstream.jobs import JobStore
from vstream.kafka_io import make_consumer
from vstream.names import Keys, Topics
from vstream.schema import ClipParams, IngestRequest

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster]

PUBLIC = "rtsp://user:secret@93.184.216.34:554/live"  # a literal public address: no DNS needed


def _body(**overrides: Any) -> dict[str, Any]:
    return {"stream_id": "lobby", "source": PUBLIC, "task": "caption", **overrides}


def _submit(client: TestClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    r = client.post("/v1/jobs", json=_body(**overrides), headers=headers)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    return job


def _store(settings: Settings, redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, Keys(settings.redis.key_prefix), 30)


def test_submit_records_the_job_and_sends_it_to_kafka(
    client: TestClient, admin: dict[str, str], settings: Settings, topics: Topics, redis_client: redis.Redis
) -> None:
    body = _body(task="events", event_types=["person falls"], gate={"enabled": True, "threshold": 6})
    r = client.post("/v1/jobs", json=body, headers=admin)
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['job_id']}"
    assert job["status"] == "queued" and job["live"] is True and job["event_types"] == ["person falls"]
    assert job["source"] == "rtsp://93.184.216.34:554/live"  # credentials never shown
    assert job["params"] == ClipParams().model_dump() and job["gate"] == {"enabled": True, "threshold": 6.0}
    assert job["progress"] == {
        "clips_acked": 0,
        "media_seconds": 0.0,
        "clips_analysed": 0,
        "clips_failed": 0,
        "clips_dead_lettered": 0,
        "analysis_complete": False,
    }

    got = client.get(r.headers["location"], headers=admin)
    assert got.status_code == 200 and got.json() == job
    keys = Keys(settings.redis.key_prefix)
    assert redis_client.sismember(keys.stream_jobs("lobby"), job["job_id"])

    consumer = make_consumer(settings.kafka, f"test-{uuid.uuid4().hex}", topics.ingest_requests)
    try:
        deadline = time.monotonic() + 20
        records: list[Any] = []
        while not records and time.monotonic() < deadline:
            records = [rec for batch in consumer.poll(timeout_ms=500).values() for rec in batch]
    finally:
        consumer.close()
    (record,) = records
    sent = IngestRequest.model_validate_json(record.value)
    assert record.key == b"lobby" and sent.job_id == job["job_id"] and sent.task == "events"
    assert sent.source == PUBLIC  # the worker gets the credentials
    assert sent.gate.enabled and sent.submitted_at == job["submitted_at"]


def test_a_file_under_the_media_root_is_stored_as_its_real_path(
    client: TestClient, admin: dict[str, str], tmp_path: Path
) -> None:
    video = tmp_path / "media" / "day1" / "a.mp4"
    video.parent.mkdir()
    video.write_bytes(b"not really a video")
    job = _submit(client, admin, source="day1/a.mp4", task="segments")
    assert job["source"] == str(video.resolve()) and job["live"] is False
    job = _submit(client, admin, source=f"file://{video}")
    assert job["source"] == str(video.resolve())


def test_progress_counts_acknowledged_and_analysed_clips(
    client: TestClient, admin: dict[str, str], settings: Settings, redis_client: redis.Redis
) -> None:
    params = {"fps": 2, "clip_seconds": 10, "overlap_seconds": 4, "max_side": 224}
    job = _submit(client, admin, params=params)
    req = _store(settings, redis_client).get(job["job_id"])
    assert req is not None
    _store(settings, redis_client).set_acked_index(req.request, 4)
    analysis = Keys(settings.redis.key_prefix).analysis_progress(
        req.request.stream_id, req.request.params.params_hash
    )
    redis_client.hset(analysis, mapping={"analysed": 3, "failed": 1})
    progress = client.get(f"/v1/jobs/{job['job_id']}", headers=admin).json()["progress"]
    assert progress == {  # 5 clips x 6 s step
        "clips_acked": 5,
        "media_seconds": 30.0,
        "clips_analysed": 3,
        "clips_failed": 1,
        "clips_dead_lettered": 0,
        "analysis_complete": False,
    }


def test_live_is_what_the_worker_found_once_it_opened_the_source(
    client: TestClient, admin: dict[str, str], settings: Settings, redis_client: redis.Redis
) -> None:
    job = _submit(client, admin, source="https://93.184.216.34/files/match.mp4")
    assert job["live"] is True, "a URL counts as live until a worker has opened it"
    _store(settings, redis_client).record(job["job_id"], live=0)  # it reported a duration: a file
    assert client.get(f"/v1/jobs/{job['job_id']}", headers=admin).json()["live"] is False


def test_idempotency_key_returns_the_same_job(
    client: TestClient, admin: dict[str, str], settings: Settings, redis_client: redis.Redis
) -> None:
    headers = {**admin, "Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json=_body(), headers=headers)
    again = client.post("/v1/jobs", json=_body(), headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["location"] == first.headers["location"]
    assert again.json()["submitted_at"] == first.json()["submitted_at"]

    other_stream = client.post("/v1/jobs", json=_body(stream_id="hall"), headers=headers)
    assert other_stream.status_code == 201 and other_stream.json()["job_id"] != first.json()["job_id"]
    changed = client.post("/v1/jobs", json=_body(task="segments"), headers=headers)
    assert changed.status_code == 422 and "different request" in changed.json()["detail"]
    without = _submit(client, admin)
    assert without["job_id"] not in (first.json()["job_id"], other_stream.json()["job_id"])
    assert redis_client.zcard(Keys(settings.redis.key_prefix).jobs) == 3


def test_kafka_failure_is_503_and_leaves_nothing_behind(client: TestClient, admin: dict[str, str]) -> None:
    class DownProducer:
        def send(self, *args: object, **kwargs: object) -> None:
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")

    resources = client.app.state.resources  # type: ignore[attr-defined]
    real, resources.producer = resources.producer, DownProducer()
    headers = {**admin, "Idempotency-Key": "retry-me"}
    try:
        r = client.post("/v1/jobs", json=_body(), headers=headers)
    finally:
        resources.producer = real
    assert r.status_code == 503 and "Kafka" in r.json()["detail"] and "Idempotency-Key" in r.json()["detail"]
    assert client.get("/v1/jobs", headers=admin).json()["items"] == []

    retried = client.post("/v1/jobs", json=_body(), headers=headers)
    assert retried.status_code == 201 and retried.json()["status"] == "queued"


def test_streams_outside_the_key_are_refused_or_hidden(client: TestClient, admin: dict[str, str]) -> None:
    lobby = make_key(client, admin, "lobby*")
    r = client.post("/v1/jobs", json=_body(stream_id="hall"), headers=lobby)
    assert r.status_code == 403 and "hall" in r.json()["detail"]
    hall_job = _submit(client, admin, stream_id="hall")
    mine = _submit(client, lobby, stream_id="lobby-2")

    assert client.get(f"/v1/jobs/{mine['job_id']}", headers=lobby).status_code == 200
    hidden = client.get(f"/v1/jobs/{hall_job['job_id']}", headers=lobby)
    unknown = client.get("/v1/jobs/job-doesnotexist", headers=lobby)
    assert hidden.status_code == unknown.status_code == 404  # existence is not leaked
    for action in ("pause", "resume"):
        assert client.post(f"/v1/jobs/{hall_job['job_id']}/{action}", headers=lobby).status_code == 404
    assert client.delete(f"/v1/jobs/{hall_job['job_id']}", headers=lobby).status_code == 404
    assert client.get(f"/v1/jobs/{hall_job['job_id']}", headers=admin).json()["status"] == "queued"

    listed = client.get("/v1/jobs", headers=lobby).json()
    assert [j["job_id"] for j in listed["items"]] == [mine["job_id"]] and listed["next_cursor"] is None
    assert client.get("/v1/jobs?stream_id=hall", headers=lobby).status_code == 403


def test_list_walks_every_job_exactly_once(client: TestClient, admin: dict[str, str]) -> None:
    submitted = [_submit(client, admin, stream_id=f"cam-{i}")["job_id"] for i in range(3)]
    seen, cursor, pages = [], None, 0
    while True:
        r = client.get(
            "/v1/jobs", params={"limit": 1, **({"cursor": cursor} if cursor else {})}, headers=admin
        )
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        assert len(page["items"]) == 1
        seen.append(page["items"][0]["job_id"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 3
    assert pages == 3 and seen == submitted[::-1]  # newest first, each once

    two = client.get("/v1/jobs", params={"limit": 2}, headers=admin).json()
    rest = client.get("/v1/jobs", params={"limit": 2, "cursor": two["next_cursor"]}, headers=admin).json()
    assert [j["job_id"] for j in two["items"] + rest["items"]] == submitted[::-1]
    assert rest["next_cursor"] is None
    exact = client.get("/v1/jobs", params={"limit": 3}, headers=admin).json()
    assert len(exact["items"]) == 3 and exact["next_cursor"] is None


def test_list_filters_by_stream_and_status(client: TestClient, admin: dict[str, str]) -> None:
    a = _submit(client, admin, stream_id="cam-a")["job_id"]
    b = _submit(client, admin, stream_id="cam-b")["job_id"]
    assert client.post(f"/v1/jobs/{b}/pause", headers=admin).status_code == 200
    by_stream = client.get("/v1/jobs", params={"stream_id": "cam-a"}, headers=admin).json()["items"]
    assert [j["job_id"] for j in by_stream] == [a]
    paused = client.get("/v1/jobs", params={"status": "paused"}, headers=admin).json()["items"]
    assert [j["job_id"] for j in paused] == [b]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"limit": 0}, "query.limit", "between 1 and 500"),
        ({"limit": 501}, "query.limit", "between 1 and 500"),
        ({"cursor": "bm9wZQ"}, "query.cursor", "next_cursor"),
        ({"status": "sleeping"}, "query.status", "queued"),
    ],
)
def test_list_rejects_bad_parameters(
    client: TestClient, admin: dict[str, str], params: dict[str, Any], field: str, message: str
) -> None:
    r = client.get("/v1/jobs", params=params, headers=admin)
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["field"] == field and message in error["message"]


def test_pause_resume_cancel_transitions(client: TestClient, admin: dict[str, str]) -> None:
    job = _submit(client, admin)["job_id"]
    url = f"/v1/jobs/{job}"

    resume_queued = client.post(f"{url}/resume", headers=admin)
    assert resume_queued.status_code == 409 and "only a paused job" in resume_queued.json()["detail"]
    paused = client.post(f"{url}/pause", headers=admin)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert paused.json()["updated_at"] >= paused.json()["submitted_at"]
    assert client.post(f"{url}/pause", headers=admin).json()["status"] == "paused"  # idempotent
    resumed = client.post(f"{url}/resume", headers=admin)
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"

    assert client.delete(url, headers=admin).status_code == 204
    assert client.get(url, headers=admin).json()["status"] == "cancelled"
    assert client.delete(url, headers=admin).status_code == 204  # idempotent
    for action in ("pause", "resume"):
        r = client.post(f"{url}/{action}", headers=admin)
        assert r.status_code == 409 and "is cancelled" in r.json()["detail"]
    assert client.get(url, headers=admin).json()["status"] == "cancelled"


@pytest.mark.parametrize("final", ["done", "failed"])
def test_finished_jobs_cannot_be_paused_or_cancelled(
    client: TestClient, admin: dict[str, str], settings: Settings, redis_client: redis.Redis, final: str
) -> None:
    job = _submit(client, admin)["job_id"]
    _store(settings, redis_client).set_status(job, final)  # type: ignore[arg-type]
    pause = client.post(f"/v1/jobs/{job}/pause", headers=admin)
    assert pause.status_code == 409 and pause.json()["status_now"] == final
    cancel = client.delete(f"/v1/jobs/{job}", headers=admin)
    assert cancel.status_code == 409 and "cannot be cancelled" in cancel.json()["detail"]
    assert client.get(f"/v1/jobs/{job}", headers=admin).json()["status"] == final


def test_unknown_jobs_are_404(client: TestClient, admin: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/v1/jobs/job-nope"),
        ("POST", "/v1/jobs/job-nope/pause"),
        ("POST", "/v1/jobs/job-nope/resume"),
        ("DELETE", "/v1/jobs/job-nope"),
    ]:
        r = client.request(method, path, headers=admin)
        assert r.status_code == 404 and r.json()["title"] == "No such job", (method, path)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"params": {"fps": -1}}, "params.fps", "greater than 0"),
        ({"params": {"clip_seconds": 4, "overlap_seconds": 4}}, "params", "overlap_seconds must be smaller"),
        ({"params": {"max_side": 300}}, "params", "multiple of 28"),
        ({"task": "events"}, "body", "needs at least one entry in event_types"),
        ({"task": "events", "event_types": [" "]}, "event_types.0", "at least 1 character"),
        ({"event_types": ["fall"]}, "body", "only apply to task 'events'"),
        ({"stream_id": "../etc"}, "stream_id", "letters, digits"),
        ({"stream_id": ""}, "stream_id", "letters, digits"),
        ({"task": "summarise"}, "task", "'events'"),
        ({"gate": {"threshold": 0}}, "gate.threshold", "greater than 0"),
        ({"source": ""}, "source", "at least 1 character"),
        ({"priority": 1}, "priority", "Extra inputs"),
    ],
)
def test_invalid_fields_are_422_with_a_clear_message(
    client: TestClient, admin: dict[str, str], overrides: dict[str, Any], field: str, message: str
) -> None:
    r = client.post("/v1/jobs", json=_body(**overrides), headers=admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert field in errors and message in errors[field], errors
    assert client.get("/v1/jobs", headers=admin).json()["items"] == []


def test_a_bad_idempotency_key_is_422(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/v1/jobs", json=_body(), headers={**admin, "Idempotency-Key": "x" * 300})
    assert r.status_code == 422 and "idempotency-key" in r.json()["detail"]


def test_openapi_documents_examples_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/jobs"]["post"]
    assert {"200", "201", "401", "403", "422", "503"} <= set(post["responses"])
    assert post["requestBody"]["content"]["application/json"]["examples"]
    for name in ("JobCreate", "JobView", "JobList", "KeyCreate", "KeyCreated", "KeyList"):
        assert spec["components"]["schemas"][name]["examples"], name
    for path, method, codes in [
        ("/v1/jobs/{job_id}", "get", {"401", "404"}),
        ("/v1/jobs/{job_id}/pause", "post", {"404", "409"}),
        ("/v1/jobs/{job_id}", "delete", {"204", "404", "409"}),
        ("/v1/keys/{key_id}", "delete", {"204", "401", "403", "404"}),
    ]:
        assert codes <= set(spec["paths"][path][method]["responses"]), (path, method)
