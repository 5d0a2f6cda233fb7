"""``POST /v1/streams/{id}/ask`` against the real Redis, the model scripted (its text is set by each test;
random tiny weights could not answer): citations always name stored records, an empty range is answered
without the model, other streams are refused, long ranges go through map-reduce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_key
from tests.helpers.stored_results import caption, event, segment, store
from vstream.config import AskSettings, ModelSettings, Settings
from vstream.names import Keys

STREAM = "lecture-1"


def answer(text: str, citations: list[list[float]], found: bool = True) -> str:
    return json.dumps({"found": found, "answer": text, "citations": citations})


def app_client(api_settings: Settings, tmp_path: Path, text: str | None, **ask: int) -> TestClient:
    script = tmp_path / "ask-script.json"
    if text is not None:  # None: no script at all, so any attempt to make the model fails
        script.write_text(json.dumps({"outputs": {"text": text}}))
    s = api_settings.model_copy(
        update={"model": ModelSettings(type="scripted", model=str(script)), "ask": AskSettings(**ask)}
    )
    return TestClient(create_app(s), raise_server_exceptions=False)


@pytest.fixture
def seeded(api_settings: Settings) -> Keys:
    keys = Keys(api_settings.redis.key_prefix)
    r = redis.Redis.from_url(api_settings.redis.url)
    store(
        r,
        keys,
        STREAM,
        events=[event(STREAM, "e1", "speaker writes on board", 95.0, 101.0, "an equation is written")],
        segments=[
            segment(STREAM, "s0", 0.0, 60.0, "Introduction", "the speaker introduces energy"),
            segment(STREAM, "s1", 60.0, 130.0, "Entropy", "the speaker defines entropy as a count of states"),
        ],
        captions=[caption(STREAM, f"c{i}", 30.0 * i, 30.0 * i + 30, f"caption number {i}") for i in range(5)],
    )
    r.close()
    return keys


@pytest.mark.integration
def test_citations_are_stored_spans_invented_ones_dropped_near_ones_repaired(
    api_settings: Settings, tmp_path: Path, admin: dict[str, str], seeded: Keys
) -> None:
    text = answer("Entropy is defined at about a minute in.", [[60, 130], [62, 128.9], [500, 510], [95, 101]])
    with app_client(api_settings, tmp_path, text) as c:
        r = c.post(f"/v1/streams/{STREAM}/ask", json={"question": "When is entropy defined?"}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == "Entropy is defined at about a minute in." and body["found"] is True
    cited = [(x["kind"], x["ref"], x["start"], x["end"], x["repaired"]) for x in body["citations"]]
    # [60, 130] is the segment exactly; [62, 128.9] overlaps it best (repaired to it, listed once);
    # [95, 101] is the event; [500, 510] matches nothing stored and is dropped
    assert cited == [("segment", "s1", 60.0, 130.0, False), ("event", "e1", 95.0, 101.0, False)]
    assert body["dropped_citations"] == 1
    assert (body["records"], body["chunks"], body["no_data"]) == (8, 1, False)
    assert body["model_id"].startswith("scripted:")


@pytest.mark.integration
def test_a_citation_only_overlapping_a_record_is_repaired_to_it(
    api_settings: Settings, tmp_path: Path, admin: dict[str, str], seeded: Keys
) -> None:
    with app_client(api_settings, tmp_path, answer("Around 100 s.", [[99, 100.5]])) as c:
        r = c.post(
            f"/v1/streams/{STREAM}/ask", json={"question": "q", "start": 90, "end": 110}, headers=admin
        )
    assert r.status_code == 200, r.text
    (only,) = r.json()["citations"]
    assert (only["kind"], only["ref"], only["repaired"]) == (
        "event",
        "e1",
        True,
    )  # the best-overlapping record
    # the event, segment s1 and captions c2 and c3 (c2 ends at 90: ranges are inclusive, as in the listings)
    assert r.json()["records"] == 4


@pytest.mark.integration
def test_a_range_without_records_says_so_without_the_model(
    api_settings: Settings, tmp_path: Path, admin: dict[str, str], seeded: Keys
) -> None:
    with app_client(api_settings, tmp_path, None) as c:  # no script: making the model would fail (502)
        r = c.post(
            f"/v1/streams/{STREAM}/ask", json={"question": "q", "start": 1000, "end": 2000}, headers=admin
        )
        unknown = c.post("/v1/streams/never-seen/ask", json={"question": "q"}, headers=admin)
        with_data = c.post(f"/v1/streams/{STREAM}/ask", json={"question": "q"}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["no_data"], body["found"], body["chunks"], body["citations"]) == (True, False, 0, [])
    assert (
        body["answer"]
        == "No captions, segments or events are stored for stream 'lecture-1' between 1000 s and 2000 s."
    )
    assert unknown.status_code == 200 and unknown.json()["no_data"] is True
    assert with_data.status_code == 502  # proves the model is made only when there is something to read


@pytest.mark.integration
def test_streams_outside_the_key_are_refused(
    api_settings: Settings, tmp_path: Path, admin: dict[str, str], seeded: Keys
) -> None:
    with app_client(api_settings, tmp_path, answer("x", [])) as c:
        cams = make_key(c, admin, "cam-*")
        refused = c.post(f"/v1/streams/{STREAM}/ask", json={"question": "q"}, headers=cams)
        anonymous = c.post(f"/v1/streams/{STREAM}/ask", json={"question": "q"})
        lectures = make_key(c, admin, "lecture-*")
        allowed = c.post(f"/v1/streams/{STREAM}/ask", json={"question": "q"}, headers=lectures)
    assert refused.status_code == 403 and "lecture-1" in refused.json()["detail"]
    assert anonymous.status_code == 401
    assert allowed.status_code == 200


@pytest.mark.integration
def test_long_ranges_are_answered_by_map_reduce(
    api_settings: Settings, tmp_path: Path, admin: dict[str, str]
) -> None:
    keys = Keys(api_settings.redis.key_prefix)
    r = redis.Redis.from_url(api_settings.redis.url)
    long_captions = [
        caption("cam-long", f"c{i}", 8.0 * i, 8.0 * i + 8, f"a van passes the gate, clip {i} " * 2)
        for i in range(60)
    ]
    store(r, keys, "cam-long", captions=long_captions)
    r.close()
    # every map and reduce answer cites clip 3 and an invented range
    with app_client(
        api_settings,
        tmp_path,
        answer("A van passed at 24 s.", [[24, 32], [9000, 9001]]),
        chunk_chars=600,
        fan_in=2,
    ) as c:
        resp = c.post(
            "/v1/streams/cam-long/ask", json={"question": "did a van stop?", "thinking": True}, headers=admin
        )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["records"] == 60 and body["chunks"] > 4
    assert [(x["ref"], x["start"], x["end"]) for x in body["citations"]] == [("c3", 24.0, 32.0)]
    assert body["thinking"] is True and body["dropped_citations"] == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"question": "q", "start": 20, "end": 10}, "start (20) is after end (10)"),
        ({"question": "  "}, "blank"),
        ({}, "question"),
    ],
)
def test_bad_questions_get_422(
    api_settings: Settings, tmp_path: Path, admin: dict[str, str], payload: dict[str, object], field: str
) -> None:
    with app_client(api_settings, tmp_path, answer("x", [])) as c:
        r = c.post(f"/v1/streams/{STREAM}/ask", json=payload, headers=admin)
    assert r.status_code == 422 and field in r.text
