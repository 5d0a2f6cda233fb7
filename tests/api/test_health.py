import time

import pytest
import redis
from fastapi.testclient import TestClient

from vstream.config import Settings
from vstream.metrics import Counters, InferHeartbeat
from vstream.names import Keys

pytestmark = pytest.mark.integration


def test_live_and_ready_need_no_key(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "ok", "checks": {}}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "kafka": "ok"}


def test_metrics_show_what_workers_counted_and_consumer_lag(
    client: TestClient, api_settings: Settings
) -> None:
    counters = Counters(redis.Redis.from_url(api_settings.redis.url), Keys(api_settings.redis.key_prefix))
    counters.add("clips_produced", 3, stream="cam-1")
    counters.add("clips_produced", 2, stream="cam-1")
    counters.add("parse_failures", stream="lecture")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'vstream_clips_produced_total{stream="cam-1"} 5.0' in r.text
    assert 'vstream_parse_failures_total{stream="lecture"} 1.0' in r.text
    assert "vstream_consumer_lag" in r.text


def test_unknown_metric_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        Counters(None, Keys()).add("clips_prodcued")  # type: ignore[arg-type]


def test_oversized_body_is_refused_with_a_problem(client: TestClient) -> None:
    r = client.post("/v1/keys", content=b"x" * 100_000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert "limited to" in r.json()["detail"]


def test_a_model_outage_seen_by_an_infer_worker_shows_on_ready_and_metrics(
    client: TestClient, api_settings: Settings
) -> None:
    r = redis.Redis.from_url(api_settings.redis.url)
    keys = Keys(api_settings.redis.key_prefix)
    now = time.time()
    up = InferHeartbeat(worker_id="w-up", at=now, in_flight=3)
    down = InferHeartbeat(
        worker_id="w-down", at=now, outage_since=now - 42, outage_error="connection refused"
    )
    for beat in (up, down):
        r.set(keys.worker_heartbeat("infer", beat.worker_id), beat.model_dump_json(), ex=60)
    ready = client.get("/health/ready")
    # the API still answers queries from Redis: degraded, not out of its load balancer
    assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
    model = ready.json()["checks"]["model"]
    assert model.startswith("outage: 1 of 2 infer workers") and "connection refused" in model
    text = client.get("/metrics").text
    assert "vstream_infer_workers 2.0" in text and "vstream_infer_in_flight 3.0" in text
    (line,) = [
        ln for ln in text.splitlines() if ln.startswith('vstream_model_outage_seconds{worker="w-down"}')
    ]
    assert float(line.split()[-1]) >= 42
    assert 'vstream_model_outage_seconds{worker="w-up"} 0.0' in text
    r.delete(keys.worker_heartbeat("infer", down.worker_id))
    assert client.get("/health/ready").json() == {
        "status": "ok",
        "checks": {"redis": "ok", "kafka": "ok", "model": "ok"},
    }
