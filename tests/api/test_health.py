import pytest
import redis
from fastapi.testclient import TestClient

from vstream.config import Settings
from vstream.metrics import Counters
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
