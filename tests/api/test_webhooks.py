"""/v1/streams/{stream_id}/webhooks: CRUD, the secret shown once, access control, URL and kinds checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_key
from vstream.config import Settings
from vstream.names import Keys
from vstream.webhook_records import DeliveryRecord

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster]

PUBLIC = "https://93.184.215.14/hooks/vstream"  # an IP literal: public, and needs no DNS


def create(client: TestClient, headers: dict[str, str], stream: str = "cam-1", **body: object) -> Any:
    return client.post(f"/v1/streams/{stream}/webhooks", json={"url": PUBLIC, **body}, headers=headers)


@pytest.fixture
def private_client(api_settings: Settings) -> Iterator[TestClient]:
    """The app with the SSRF guard's private-network check off (receivers on 127.0.0.1)."""
    api = api_settings.api.model_copy(update={"allow_private_networks": True})
    with TestClient(create_app(api_settings.model_copy(update={"api": api}), kafka=False)) as c:
        yield c


def test_create_list_delete(client: TestClient, admin: dict[str, str]) -> None:
    r = create(client, admin, kinds=["close", "open", "close"])
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["webhook_id"].startswith("wh_") and made["url"] == PUBLIC and made["stream_id"] == "cam-1"
    assert made["kinds"] == ["open", "close"]  # deduplicated, lifecycle order
    assert len(made["secret"]) >= 32  # generated, shown this once
    all_kinds = create(client, admin).json()
    assert all_kinds["kinds"] == ["open", "update", "close"]

    listed = client.get("/v1/streams/cam-1/webhooks", headers=admin)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [h["webhook_id"] for h in items] == [made["webhook_id"], all_kinds["webhook_id"]]
    assert "secret" not in listed.text and made["secret"] not in listed.text
    assert client.get("/v1/streams/cam-2/webhooks", headers=admin).json() == {"items": []}

    url = f"/v1/streams/cam-1/webhooks/{made['webhook_id']}"
    assert client.delete(url, headers=admin).status_code == 204
    assert client.delete(url, headers=admin).status_code == 404
    assert client.get(f"{url}/deliveries", headers=admin).status_code == 404
    left = client.get("/v1/streams/cam-1/webhooks", headers=admin).json()["items"]
    assert [h["webhook_id"] for h in left] == [all_kinds["webhook_id"]]


def test_own_secret_is_kept_and_not_echoed(
    client: TestClient, admin: dict[str, str], api_settings: Settings, redis_client: redis.Redis
) -> None:
    secret = "my-own-secret-of-some-length"
    r = create(client, admin, secret=secret)
    assert r.status_code == 201 and "secret" not in r.json() and secret not in r.text
    stored = redis_client.hget(Keys(api_settings.redis.key_prefix).webhooks("cam-1"), r.json()["webhook_id"])
    assert stored is not None and json.loads(stored)["secret"] == secret


def test_key_of_another_stream_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    cam = make_key(client, admin, "cam-*")
    hook = create(client, cam)
    assert hook.status_code == 201, hook.text
    assert create(client, cam, stream="lobby").status_code == 403
    assert client.get("/v1/streams/lobby/webhooks", headers=cam).status_code == 403
    lobby = make_key(client, admin, "lobby")
    base = f"/v1/streams/cam-1/webhooks/{hook.json()['webhook_id']}"
    assert client.get("/v1/streams/cam-1/webhooks", headers=lobby).status_code == 403
    assert client.get(f"{base}/deliveries", headers=lobby).status_code == 403
    assert client.delete(base, headers=lobby).status_code == 403
    assert client.get("/v1/streams/cam-1/webhooks").status_code == 401
    assert len(client.get("/v1/streams/cam-1/webhooks", headers=cam).json()["items"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://93.184.215.14/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@93.184.215.14/x"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": PUBLIC, "kinds": ["opened"]}, "kinds.0"),
        ({"url": PUBLIC, "kinds": []}, "kinds"),
        ({"url": PUBLIC, "secret": "short"}, "secret"),
        ({"url": PUBLIC, "extra": 1}, "extra"),
    ],
)
def test_bad_url_or_kinds_is_a_422(
    client: TestClient, admin: dict[str, str], body: dict[str, object], field: str
) -> None:
    r = client.post("/v1/streams/cam-1/webhooks", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/x",
        "https://user:pw@93.184.215.14/x",
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:8080/hook",
        "http://no-such-host.invalid/hook",
    ],
)
def test_a_refused_url_is_titled_as_a_webhook_url(
    client: TestClient, admin: dict[str, str], url: str
) -> None:
    r = client.post("/v1/streams/cam-1/webhooks", json={"url": url}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["title"] == "Webhook URL not allowed"
    assert r.json()["errors"][0]["field"] == "url"


def test_loopback_is_refused_by_default_and_allowed_when_configured(
    client: TestClient, private_client: TestClient, admin: dict[str, str]
) -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://localhost:8080/hook", "http://[::1]:8080/hook"):
        r = client.post("/v1/streams/cam-1/webhooks", json={"url": url}, headers=admin)
        assert r.status_code == 422, (url, r.text)
        assert "loopback" in r.json()["detail"]
    r = private_client.post(
        "/v1/streams/cam-1/webhooks", json={"url": "http://127.0.0.1:8080/hook"}, headers=admin
    )
    assert r.status_code == 201, r.text


def test_a_stream_has_at_most_20_webhooks(client: TestClient, admin: dict[str, str]) -> None:
    for _ in range(20):
        assert create(client, admin, stream="busy").status_code == 201
    r = create(client, admin, stream="busy")
    assert r.status_code == 409 and "at most 20" in r.json()["detail"]


def test_deliveries_newest_first_without_bodies(
    client: TestClient, admin: dict[str, str], api_settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys(api_settings.redis.key_prefix)
    hook = create(client, admin).json()["webhook_id"]
    for n, status in enumerate(("delivered", "retrying", "failed")):
        rec = DeliveryRecord(
            delivery_id=f"dl_{n}",
            webhook_id=hook,
            stream_id="cam-1",
            entry_id=f"{n}-0",
            event_id=f"ev{n}",
            kind="open",
            attempts=n + 1,
            status=status,
            last_status_code=200 if status == "delivered" else 503,
            body='{"secret": "body"}',
        )
        redis_client.set(keys.webhook_delivery(hook, rec.delivery_id), rec.model_dump_json())
        redis_client.lpush(keys.webhook_deliveries(hook), rec.delivery_id)
    url = f"/v1/streams/cam-1/webhooks/{hook}/deliveries"
    got = client.get(url, headers=admin).json()["items"]
    assert [d["delivery_id"] for d in got] == ["dl_2", "dl_1", "dl_0"]
    assert [d["status"] for d in got] == ["failed", "retrying", "delivered"]
    assert got[2]["attempts"] == 1 and got[2]["last_status_code"] == 200
    assert all("body" not in d for d in got)
    assert [d["delivery_id"] for d in client.get(f"{url}?limit=1", headers=admin).json()["items"]] == ["dl_2"]
    assert client.get(f"{url}?limit=0", headers=admin).status_code == 422
    assert (
        client.get("/v1/streams/cam-1/webhooks/wh_0000000000000000/deliveries", headers=admin).status_code
        == 404
    )


def test_openapi_documents_the_routes_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/streams/{stream_id}/webhooks/{webhook_id}/deliveries" in spec["paths"]
    for name in ("WebhookCreate", "WebhookCreated", "WebhookList", "Delivery", "DeliveryList"):
        assert spec["components"]["schemas"][name].get("examples"), name
