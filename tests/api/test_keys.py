"""API keys: admin-only management, hashed storage, revocation, and authentication errors."""

import re

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.conftest import make_key
from vstream.config import Settings
from vstream.names import Keys

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster]


def _create(client: TestClient, admin: dict[str, str], name: str, *streams: str) -> dict[str, object]:
    r = client.post("/v1/keys", json={"name": name, "streams": list(streams)}, headers=admin)
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def test_create_shows_the_key_once_and_stores_only_its_hash(
    client: TestClient, admin: dict[str, str], settings: Settings, redis_client: redis.Redis
) -> None:
    created = _create(client, admin, "dashboard", "lobby", "cam-*", "lobby")
    key = str(created["key"])
    assert key.startswith("vs_") and len(key) > 30
    assert re.fullmatch(r"[0-9a-f]{16}", str(created["id"]))
    assert created["name"] == "dashboard" and created["streams"] == ["lobby", "cam-*"]  # duplicate dropped

    pattern = Keys(settings.redis.key_prefix).api_key("*")
    records = [redis_client.hgetall(k) for k in redis_client.scan_iter(pattern)]
    assert len(records) == 1 and b"dashboard" in str(records).encode()
    assert key not in str(records)

    listed = client.get("/v1/keys", headers=admin)
    assert listed.status_code == 200
    assert key not in listed.text and "vs_" not in listed.text
    (item,) = listed.json()["items"]
    assert item["id"] == created["id"] and item["streams"] == ["lobby", "cam-*"] and "key" not in item
    assert item["created_at"] > 1e9


def test_a_key_authenticates_by_bearer_or_header_until_revoked(
    client: TestClient, admin: dict[str, str]
) -> None:
    created = _create(client, admin, "ops", "lobby")
    key, key_id = str(created["key"]), str(created["id"])
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200

    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 204
    r = client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and r.json()["title"] == "Unknown API key"
    assert client.get("/v1/keys", headers=admin).json()["items"] == []

    again = client.delete(f"/v1/keys/{key_id}", headers=admin)
    assert again.status_code == 404 and key_id in again.json()["detail"]


def test_revoking_needs_the_full_id_not_a_prefix(client: TestClient, admin: dict[str, str]) -> None:
    created = _create(client, admin, "ops", "lobby")
    r = client.delete(f"/v1/keys/{str(created['id'])[:8]}", headers=admin)
    assert r.status_code == 404
    assert client.get("/v1/jobs", headers={"X-API-Key": str(created["key"])}).status_code == 200


def test_missing_or_unknown_key_is_401_with_a_hint(client: TestClient) -> None:
    missing = client.get("/v1/jobs")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.headers["content-type"] == "application/problem+json"
    assert "Authorization: Bearer" in missing.json()["detail"]

    unknown = client.get("/v1/jobs", headers={"Authorization": "Bearer vs_not-a-real-key"})
    assert unknown.status_code == 401 and unknown.json()["title"] == "Unknown API key"
    assert client.get("/v1/keys", headers={"Authorization": "Basic abc"}).status_code == 401


def test_key_management_is_admin_only(client: TestClient, admin: dict[str, str]) -> None:
    user = make_key(client, admin, "*")  # even a key for every stream is not the admin
    assert client.get("/v1/keys", headers=user).status_code == 403
    r = client.post("/v1/keys", json={"name": "x", "streams": ["*"]}, headers=user)
    assert r.status_code == 403 and r.json()["title"] == "Admin only"
    key_id = client.get("/v1/keys", headers=admin).json()["items"][0]["id"]
    assert client.delete(f"/v1/keys/{key_id}", headers=user).status_code == 403
    assert len(client.get("/v1/keys", headers=admin).json()["items"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "streams": []}, "streams"),
        ({"name": "", "streams": ["a"]}, "name"),
        ({"name": "x", "streams": ["  "]}, "streams.0"),
        ({"name": "x"}, "streams"),
        ({"name": "x", "streams": ["a"], "admin": True}, "admin"),
    ],
)
def test_invalid_key_requests_name_the_field(
    client: TestClient, admin: dict[str, str], body: dict[str, object], field: str
) -> None:
    r = client.post("/v1/keys", json=body, headers=admin)
    assert r.status_code == 422
    assert field in [e["field"] for e in r.json()["errors"]]
    assert client.get("/v1/keys", headers=admin).json()["items"] == []


@pytest.mark.parametrize(
    "pattern",
    ["a b", "cam 1*", "cam/1", "cam-[12]", "cam-?", "-cam*", ".hidden", "cam\x00", "x" * 129, "é*"],
)
def test_a_stream_pattern_no_stream_id_could_match_is_refused(
    client: TestClient, admin: dict[str, str], pattern: str
) -> None:
    r = client.post("/v1/keys", json={"name": "x", "streams": ["lobby", pattern]}, headers=admin)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "streams.1"
    assert error["message"].startswith(f"{pattern!r} matches no stream id") and "'*'" in error["message"]
    assert client.get("/v1/keys", headers=admin).json()["items"] == []


def test_stream_patterns_use_stream_id_characters_and_star(client: TestClient, admin: dict[str, str]) -> None:
    patterns = ["*", "cam-*", "*.hd", "Site_2.cam-*-east", "x" * 128, " lobby "]
    created = _create(client, admin, "ok", *patterns)
    assert created["streams"] == [*patterns[:-1], "lobby"]  # surrounding whitespace is trimmed
