"""The three user journeys end to end: API -> Kafka -> ingest worker -> infer worker -> Redis -> API.

The model's text is scripted (a backend behind the same interface) because each test must control what
"the model" says; everything else is the real system on the real Kafka and Redis.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from tests.conftest import records, start_worker, wait_for
from tests.media_fixtures import sample
from vstream.config import ApiSettings, Settings
from vstream.names import Keys
from vstream.webhooks import verify_signature

pytestmark = pytest.mark.integration
ADMIN = "admin-journeys-key"
SECRET = "a-webhook-secret-of-some-length"


def det(label: str, start: float, end: float, conf: float = 0.85, box: str = "") -> str:
    extra = f', "box": {box}' if box else ""
    return (
        f'{{"label": "{label}", "start": {start}, "end": {end}, "confidence": {conf}, '
        f'"description": "{label} seen"{extra}}}'
    )


class Receiver:
    """A real webhook receiver on loopback that records what it gets."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


def journey_settings(settings: Settings, media: Path) -> Settings:
    api = ApiSettings(
        admin_key=SecretStr(ADMIN), file_roots=[media], allow_private_networks=True, webhook_max_attempts=3
    )
    return settings.model_copy(update={"api": api})


class Workers:
    def __init__(self, s: Settings, script: Mapping[str, object], tmp: Path, kinds: tuple[str, ...]) -> None:
        path = tmp / "script.json"
        path.write_text(json.dumps(script))
        env = {
            "VSTREAM_MODEL__TYPE": "scripted",
            "VSTREAM_MODEL__MODEL": str(path),
            "VSTREAM_MODEL__MAX_WAIT_S": "0.1",
            "VSTREAM_API__ALLOW_PRIVATE_NETWORKS": "true",
        }
        self.procs = [start_worker(s, kind, tmp / f"{kind}.log", env) for kind in kinds]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=60)


@pytest.fixture
def api(settings: Settings, media: Path) -> Iterator[TestClient]:
    with TestClient(create_app(journey_settings(settings, media)), raise_server_exceptions=False) as client:
        yield client


def auth(client: TestClient, streams: str) -> dict[str, str]:
    r = client.post(
        "/v1/keys",
        json={"name": "journey", "streams": [streams]},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def results(s: Settings, stream: str) -> int:
    return int(redis.Redis.from_url(s.redis.url).zcard(Keys(s.redis.key_prefix).results(stream)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_surveillance_camera_alerts_once_with_thumbnail_and_signed_webhook(
    settings: Settings, media: Path, api: TestClient, tmp_path: Path
) -> None:
    s = journey_settings(settings, media)
    label = "person enters restricted area"
    script = {"outputs": {"events": f"<think></think>[{det(label, 1, 3, box='[100, 200, 400, 900]')}]"}}
    video = sample(tmp_path, "cam.mp4", seconds=40, width=320, height=180)
    url = f"http://127.0.0.1:{_free_port()}/live.ts"
    camera = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-i", str(video), "-c", "copy", "-f", "mpegts", "-listen", "1", url]
    )
    receiver, workers = Receiver(), Workers(s, script, tmp_path, ("ingest", "infer", "webhooks"))
    headers = auth(api, "cam-*")
    try:
        hook = api.post(
            "/v1/streams/cam-1/webhooks",
            headers=headers,
            json={"url": receiver.url, "kinds": ["open", "close"], "secret": SECRET},
        )
        assert hook.status_code == 201, hook.text
        job = api.post(
            "/v1/jobs",
            headers=headers,
            json={"stream_id": "cam-1", "source": url, "preset": "surveillance", "event_types": [label]},
        )
        assert job.status_code == 201, job.text
        wait_for(lambda: results(s, "cam-1") >= 3 and receiver.got, 120, "3 analysed clips and an alert")
    finally:
        workers.stop()
        camera.kill()
        receiver.close()
    opens = [(h, b) for h, b in receiver.got if h["x-vstream-event"] == "open"]
    assert len(opens) == 1, "one alert for one continuing event, however many clips saw it"
    h, body = opens[0]
    assert verify_signature(SECRET, h["x-vstream-timestamp"], body, h["x-vstream-signature"])
    change = json.loads(body)
    event = change["event"]
    assert event["label"] == label and event["confidence"] == 0.85 and event["wall_start"] > 1.6e9
    assert event["boxes"] and event["boxes"][0]["x2"] > event["boxes"][0]["x1"]
    assert base64.b64decode(change["thumbnail_jpeg_b64"])[:2] == b"\xff\xd8"
    thumb = api.get(f"/v1/events/{event['event_id']}/thumbnail.jpg", headers=headers)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert (
        api.get(f"/v1/events/{event['event_id']}/thumbnail.jpg", headers=auth(api, "other-*")).status_code
        == 403
    )


def test_sports_match_gives_ranked_highlights_and_a_playable_reel(
    settings: Settings, media: Path, api: TestClient, tmp_path: Path
) -> None:
    s = journey_settings(settings, media)
    goal, foul = f"[{det('goal', 2, 4, 0.9)}]", f"[{det('foul', 2, 3, 0.8)}]"
    script = {"outputs": {"events": [goal, "[]", "[]", foul, "[]", "[]"]}}  # clip i gets item i % 6
    video = sample(media, "match.mp4", seconds=60, width=320, height=180)
    workers = Workers(s, script, tmp_path, ("ingest", "infer"))
    headers = auth(api, "match-*")
    try:
        job = api.post(
            "/v1/jobs",
            headers=headers,
            json={"stream_id": "match-1", "source": str(video), "preset": "sports", "sport": "soccer"},
        )
        assert job.status_code == 201, job.text
        wait_for(lambda: results(s, "match-1") >= 10, 120, "all 10 clips analysed")
    finally:
        workers.stop()
    top = api.get("/v1/streams/match-1/highlights?k=3", headers=headers)
    assert top.status_code == 200, top.text
    items = top.json()["items"]
    k = Keys(s.redis.key_prefix)
    events = sorted(
        records(redis.Redis.from_url(s.redis.url), k.events("match-1"), lambda e: k.event("match-1", e)),
        key=lambda e: e["start"],
    )
    # goals in clips 0 and 6 (near 0 and 36 s), fouls in clips 3 and 9 (near 18 and 54 s): four events
    assert [e["label"] for e in events] == ["goal", "foul", "goal", "foul"]
    assert all(e["state"] == "closed" for e in events)
    goals = [e for e in events if e["label"] == "goal"]
    expected = [(e["label"], max(0.0, e["start"] - 2), e["end"] + 3) for e in [*goals, events[1]]]
    got = [(i["label"], i["start"], i["end"]) for i in items]
    assert [g[0] for g in got] == ["goal", "goal", "foul"]
    assert all(
        abs(a[1] - b[1]) < 1e-3 and abs(a[2] - b[2]) < 1e-3 for a, b in zip(got, expected, strict=True)
    )
    assert [i["rank"] for i in items] == [1, 2, 3] and items[0]["score"] > items[2]["score"]
    total = sum(i["end"] - i["start"] for i in items)
    reel = api.post("/v1/streams/match-1/reel", headers=headers, json={"k": 3})
    assert reel.status_code == 201, reel.text
    assert reel.json()["duration_s"] == pytest.approx(total, abs=0.05)
    mp4 = api.get("/v1/streams/match-1/reel.mp4", headers=headers)
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    (tmp_path / "reel.mp4").write_bytes(mp4.content)
    with av.open(str(tmp_path / "reel.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames - total * 30) <= 3, "a playable reel of the highlights' total duration"


def test_lecture_gives_ordered_chapters_and_a_summary(
    settings: Settings, media: Path, api: TestClient, tmp_path: Path
) -> None:
    s = journey_settings(settings, media)
    parts = [("Introduction", "Energy"), ("Kinetic energy", "Potential energy"), ("Examples", "Questions")]
    answers = [
        "["
        + ", ".join(
            f'{{"start": {a}, "end": {b}, "title": "{t}", "description": "About {t.lower()}."}}'
            for (a, b), t in zip(((0, 15), (15, 30)), titles, strict=True)
        )
        + "]"
        for titles in parts
    ]
    script = {"outputs": {"segments": answers, "text": "The lecture covers energy, part {n}."}}
    video = sample(media, "lecture.mp4", seconds=90, width=320, height=180)
    workers = Workers(s, script, tmp_path, ("ingest", "infer"))
    headers = auth(api, "physics-*")
    try:
        job = api.post(
            "/v1/jobs",
            headers=headers,
            json={"stream_id": "physics-101", "source": str(video), "preset": "lecture"},
        )
        assert job.status_code == 201, job.text

        def final() -> bool:
            r = api.get("/v1/streams/physics-101/summary", headers=headers)
            return r.status_code == 200 and not r.json()["partial"]

        wait_for(final, 120, "the final lecture summary")
    finally:
        workers.stop()
    progress = api.get(f"/v1/jobs/{job.json()['job_id']}", headers=headers).json()["progress"]
    assert progress["analysis_complete"] and progress["clips_analysed"] == progress["clips_acked"] > 0
    summary = api.get("/v1/streams/physics-101/summary", headers=headers).json()
    chapters = summary["chapters"]
    assert [c["number"] for c in chapters] == list(range(1, len(chapters) + 1)) and len(chapters) >= 2
    assert chapters[0]["start"] == 0.0 and chapters[-1]["end"] >= 85.0
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in itertools.pairwise(chapters)), "in order"
    assert all(c["summary"].startswith("The lecture covers energy") for c in chapters)
    assert summary["summary"].startswith("The lecture covers energy") and summary["key_points"]
    md = api.get("/v1/streams/physics-101/summary.md", headers=headers)
    assert md.status_code == 200 and "## Chapters" in md.text and "### 1. Introduction" in md.text
