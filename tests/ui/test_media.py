"""The console's video route: a key-authenticated token, then Range requests on the original file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from api.routes.media import ByteRange, parse_range
from tests.ui.conftest import Console
from vstream.config import Settings
from vstream.jobs import JobStore
from vstream.names import Keys
from vstream.schema import IngestRequest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-", ByteRange(0, 99)),
        ("bytes=10-19", ByteRange(10, 19)),
        ("bytes=90-500", ByteRange(90, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-500", ByteRange(0, 99)),
        ("bytes=0-1,5-6", None),  # several ranges: answered in full
        ("items=0-5", None),  # another unit: ignored
    ],
)
def test_parse_range_follows_rfc_9110(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-200", "bytes=-0", "bytes=20-10"])
def test_parse_range_refuses_ranges_outside_the_file(header: str) -> None:
    with pytest.raises(ValueError, match="range"):
        parse_range(header, 100)


def _job(s: Settings, stream_id: str, source: str) -> None:
    r = redis.Redis.from_url(s.redis.url)
    req = IngestRequest(job_id=f"job-{stream_id}", stream_id=stream_id, source=source)
    JobStore(r, Keys(s.redis.key_prefix), s.job_lease_s).submit(req)
    r.sadd(Keys(s.redis.key_prefix).stream_jobs(stream_id), req.job_id)


@pytest.fixture
def video(media: Path) -> bytes:
    data = bytes(range(256)) * 40  # 10240 bytes; the route does not care what is inside
    (media / "match.mp4").write_bytes(data)
    return data


def test_token_then_ranges_serve_the_file(
    console: Console, ui_settings: Settings, media: Path, video: bytes
) -> None:
    _job(ui_settings, "match-1", str(media / "match.mp4"))
    headers = {"Authorization": f"Bearer {console.key('match-*')}"}
    c = console.client
    made = c.post("/v1/streams/match-1/media-token", headers=headers)
    assert made.status_code == 201, made.text
    grant = made.json()
    assert grant["name"] == "match.mp4" and grant["url"].startswith("/v1/media/")
    assert console.key("match-*") not in grant["url"]
    whole = c.get(grant["url"])  # no key: the token is the credential
    assert whole.status_code == 200 and whole.content == video
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "video/mp4"
    part = c.get(grant["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == video[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(video)}"
    assert part.headers["content-length"] == "100"
    tail = c.get(grant["url"], headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == video[-16:]
    bad = c.get(grant["url"], headers={"Range": f"bytes={len(video)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(video)}"
    head = c.head(grant["url"], headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-range"] == f"bytes 0-9/{len(video)}"


def test_token_needs_a_key_for_the_stream(
    console: Console, ui_settings: Settings, media: Path, video: bytes
) -> None:
    _job(ui_settings, "match-1", str(media / "match.mp4"))
    c = console.client
    assert c.post("/v1/streams/match-1/media-token").status_code == 401
    other = {"Authorization": f"Bearer {console.key('cam-*')}"}
    assert c.post("/v1/streams/match-1/media-token", headers=other).status_code == 403
    assert c.get("/v1/media/" + "A" * 43).status_code == 404  # a guessed token
    assert c.get("/v1/media/short").status_code == 422


def test_no_token_for_live_streams_or_files_outside_the_roots(
    console: Console, ui_settings: Settings, tmp_path: Path, media: Path, video: bytes
) -> None:
    _job(ui_settings, "cam-1", "rtsp://camera.example.com/stream1")
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(video)
    _job(ui_settings, "cam-2", str(outside))
    headers = {"Authorization": f"Bearer {console.key('cam-*')}"}
    for stream in ("cam-1", "cam-2", "cam-none"):
        r = console.client.post(f"/v1/streams/{stream}/media-token", headers=headers)
        assert r.status_code == 404 and "media roots" in r.json()["detail"], (stream, r.text)


def test_token_stops_working_when_the_file_leaves_the_roots_or_expires(
    console: Console, ui_settings: Settings, media: Path, video: bytes
) -> None:
    _job(ui_settings, "match-1", str(media / "match.mp4"))
    headers = {"Authorization": f"Bearer {console.key('match-*')}"}
    url = console.client.post("/v1/streams/match-1/media-token", headers=headers).json()["url"]
    r = redis.Redis.from_url(ui_settings.redis.url)
    keys = Keys(ui_settings.redis.key_prefix)
    stored = list(r.scan_iter(keys.media_token("*")))
    assert len(stored) == 1 and url.rsplit("/", 1)[1] not in stored[0].decode(), (
        "only the token's hash is kept"
    )
    assert 0 < int(r.ttl(stored[0])) <= ui_settings.api.media_token_ttl_s
    assert json.loads(r.get(stored[0]) or b"{}")["stream_id"] == "match-1"
    (media / "match.mp4").unlink()
    assert console.client.get(url).status_code == 404
    r.delete(stored[0])  # what the TTL does
    assert console.client.get(url).json()["title"] == "Unknown media token"
