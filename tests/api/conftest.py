"""API fixtures: the real app (lifespan included) against the real Redis and Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from vstream.config import ApiSettings, Settings

ADMIN = "admin-test-key"


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    media = tmp_path / "media"
    media.mkdir()
    return settings.model_copy(update={"api": ApiSettings(admin_key=SecretStr(ADMIN), file_roots=[media])})


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


def make_key(client: TestClient, admin: dict[str, str], *streams: str) -> dict[str, str]:
    """A key limited to ``streams`` (fnmatch patterns), as request headers."""
    r = client.post("/v1/keys", json={"name": "test", "streams": list(streams)}, headers=admin)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}
