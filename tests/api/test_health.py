import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def test_live_and_ready_need_no_key(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "ok", "checks": {}}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "kafka": "ok"}


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200 and "vstream_clips_produced_total" in r.text


def test_oversized_body_is_refused_with_a_problem(client: TestClient) -> None:
    r = client.post("/v1/keys", content=b"x" * 100_000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert "limited to" in r.json()["detail"]
