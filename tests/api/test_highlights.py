"""Highlights and reels rank by the sport the stream's job used; a non-sports stream has no sport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.helpers.results import commit
from vstream.config import Settings
from vstream.names import Keys
from vstream.store import ResultStore

pytestmark = pytest.mark.integration

CAMERA = "rtsp://93.184.216.34:554/live"  # a literal public address: no DNS needed


def submit(client: TestClient, headers: dict[str, str], stream_id: str, source: str, **body: Any) -> None:
    r = client.post("/v1/jobs", json={"stream_id": stream_id, "source": source, **body}, headers=headers)
    assert r.status_code == 201, r.text


def highlights(client: TestClient, headers: dict[str, str], path: str) -> dict[str, Any]:
    r = client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> ResultStore:
    return ResultStore(redis_client, Keys(settings.redis.key_prefix))


def test_a_surveillance_stream_has_no_sport_and_no_highlights(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    submit(client, admin, "cam-1", CAMERA, preset="surveillance")
    commit(store, "cam-1", 0, [("person falls", 1.0, 3.0, 0.9)])
    assert highlights(client, admin, "/v1/streams/cam-1/highlights") == {"sport": None, "items": []}

    chosen = highlights(client, admin, "/v1/streams/cam-1/highlights?sport=tennis")  # asked for: ranked
    assert chosen["sport"] == "tennis" and [i["label"] for i in chosen["items"]] == ["person falls"]
    assert highlights(client, admin, "/v1/streams/never-ingested/highlights")["sport"] is None


def test_highlights_report_the_sport_of_the_streams_sports_job(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    submit(client, admin, "match-1", CAMERA, preset="sports", sport="basketball")
    submit(client, admin, "match-2", CAMERA, preset="sports")  # the preset's default sport
    commit(store, "match-1", 0, [("goal", 1.0, 3.0, 0.8)])
    commit(store, "match-1", 4, [("dunk", 1.0, 3.0, 0.8)])

    got = highlights(client, admin, "/v1/streams/match-1/highlights")
    assert got["sport"] == "basketball"
    assert [i["label"] for i in got["items"]] == ["dunk", "goal"]  # basketball's table weighs a dunk higher
    assert highlights(client, admin, "/v1/streams/match-2/highlights")["sport"] == "soccer"
    r = client.get("/v1/streams/match-1/highlights?sport=cricket", headers=admin)
    assert r.status_code == 422 and r.json()["title"] == "Unknown sport"


def test_a_reel_of_a_non_sports_stream_needs_a_sport(
    client: TestClient, admin: dict[str, str], api_settings: Settings
) -> None:
    media = Path(api_settings.api.file_roots[0])
    (media / "lobby.mp4").write_bytes(b"not decoded: the request stops before cutting")
    submit(client, admin, "lobby", "lobby.mp4", preset="surveillance")
    r = client.post("/v1/streams/lobby/reel", json={"k": 3}, headers=admin)
    assert r.status_code == 409 and r.json()["title"] == "Not a sports stream"
    assert "give 'sport'" in r.json()["detail"]
    named = client.post("/v1/streams/lobby/reel", json={"k": 3, "sport": "soccer"}, headers=admin)
    assert named.status_code == 409 and named.json()["title"] == "No highlights yet"  # past the sport check
