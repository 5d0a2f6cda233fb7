"""Result queries: the real app on real Redis, seeded through ResultStore.commit (the worker's path)."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.routes import results as results_route
from tests.api.conftest import make_key
from tests.helpers.results import LABELS, WALL0, clip, commit, commit_other_task, ladder
from vstream.analysis.results import Caption, ParsedOutput, Segment
from vstream.config import Settings
from vstream.names import Keys
from vstream.store import ResultStore

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster]

@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> ResultStore:
    return ResultStore(redis_client, Keys(settings.redis.key_prefix))


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis.key_prefix)


# --- reading --------------------------------------------------------------------------------------------


def pages(client: TestClient, url: str, headers: dict[str, str], **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a listing, following next_cursor; fails on a repeated item or an endless listing."""
    out: list[list[dict[str, Any]]] = []
    seen: set[str] = set()
    cursor = None
    for _ in range(500):
        r = client.get(url, headers=headers, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(body["items"])
        for item in body["items"]:
            ident = item.get("event_id") or item.get("segment_id") or item["clip_id"]
            assert ident not in seen, f"{ident} repeated"
            seen.add(ident)
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the listing never ended")


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["event_id"] for i in items]


def flat(page_list: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return list(itertools.chain.from_iterable(page_list))


def events_url(stream_id: str) -> str:
    return f"/v1/streams/{stream_id}/events"


def all_events(client: TestClient, admin: dict[str, str], stream_id: str) -> list[dict[str, Any]]:
    return flat(pages(client, events_url(stream_id), admin, limit=500))


# --- time ranges and filters ----------------------------------------------------------------------------


def test_media_range_uses_overlap_semantics(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    for i in range(8):  # ladder plus one long event seen by clips 2..4: [12, 32]
        long = [("long", 0.0, 8.0, 0.6)] if 2 <= i <= 4 else []
        commit(store, "cam-a", i, [(LABELS[i % 3], 1.0, 2.0, 0.8), *long])
    every = all_events(client, admin, "cam-a")
    by_label_start = {(e["label"], e["start"]): e["event_id"] for e in every}
    long_id = by_label_start["long", 12.0]

    def query(**params: float) -> list[str]:
        return ids(flat(pages(client, events_url("cam-a"), admin, **params)))

    # [14, 19]: one ending exactly at start (13-14) and one starting exactly at end (19-20) count;
    # the long one (12-32) began before the range
    assert query(start=14, end=19) == [long_id, by_label_start["dog", 13.0], by_label_start["person", 19.0]]
    assert query(start=20.5, end=24.9) == [long_id]
    assert query(end=1.0) == [by_label_start["person", 1.0]]
    assert query(start=40) == [by_label_start["car", 43.0]]
    assert query(start=100) == []
    assert query() == ids(every) and len(every) == 9
    assert [e["start"] for e in every] == sorted(e["start"] for e in every)


def test_filters_match_a_reference_on_every_page_size(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    ladder(store, "cam-a", 24)
    commit(store, "cam-a", 24, [("long", 0.0, 8.0, 0.95)], wall0=WALL0)
    every = all_events(client, admin, "cam-a")
    assert len(every) == 25 and {e["state"] for e in every} == {"open", "closed"}

    def reference(e: dict[str, Any], p: dict[str, Any]) -> bool:
        return (
            ("start" not in p or e["end"] >= p["start"])
            and ("end" not in p or e["start"] <= p["end"])
            and ("wall_start" not in p or e["wall_end"] >= p["wall_start"])
            and ("wall_end" not in p or e["wall_start"] <= p["wall_end"])
            and ("label" not in p or e["label"] in p["label"])
            and ("min_confidence" not in p or e["confidence"] >= p["min_confidence"])
            and ("state" not in p or e["state"] == p["state"])
        )

    cases: list[dict[str, Any]] = [
        {"label": ["person"]},
        {"label": ["person", "dog"], "start": 30, "end": 100},
        {"min_confidence": 0.7},
        {"min_confidence": 0.9, "label": ["car"]},
        {"state": "open"},
        {"state": "closed", "end": 50},
        {"wall_start": WALL0 + 14, "wall_end": WALL0 + 19},
        {"wall_start": WALL0 + 100, "start": 0, "end": 130},
        {"wall_end": WALL0 + 1},
        {"label": ["unknown"]},
    ]
    for params, limit in itertools.product(cases, (1, 2, 5, 500)):
        expected = [e["event_id"] for e in every if reference(e, params)]
        got = ids(flat(pages(client, events_url("cam-a"), admin, limit=limit, **params)))
        assert got == expected, (params, limit)


def test_wall_filter_leaves_out_events_without_wall_clock(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    ladder(store, "cam-file", 3, wall0=None)
    assert len(all_events(client, admin, "cam-file")) == 3
    r = client.get(events_url("cam-file"), headers=admin, params={"wall_start": 0})
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}


# --- pagination -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 12, 13])
def test_pages_never_repeat_or_skip(
    client: TestClient, admin: dict[str, str], store: ResultStore, limit: int
) -> None:
    ladder(store, "cam-a", 12)
    expected = ids(all_events(client, admin, "cam-a"))
    got = pages(client, events_url("cam-a"), admin, limit=limit)
    assert ids(flat(got)) == expected
    assert [len(p) for p in got] == [len(expected[i : i + limit]) for i in range(0, 12, limit)], (
        "full pages, the next_cursor of an exact multiple's last page is null"
    )


def test_cursor_past_the_end_gives_an_empty_last_page(
    client: TestClient, admin: dict[str, str], store: ResultStore, redis_client: redis.Redis, keys: Keys
) -> None:
    ladder(store, "cam-a", 3)
    first = client.get(events_url("cam-a"), headers=admin, params={"limit": 2}).json()
    last_id = ids(all_events(client, admin, "cam-a"))[-1]
    redis_client.delete(keys.event("cam-a", last_id))  # the only record after the cursor expired
    r = client.get(events_url("cam-a"), headers=admin, params={"limit": 2, "cursor": first["next_cursor"]})
    assert r.json() == {"items": [], "next_cursor": None}


def test_records_sharing_a_start_time_page_by_id(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    dets = [(f"label{k:02d}", 1.0, 2.0, 0.5) for k in range(20)]  # 20 events, one start time
    commit(store, "cam-a", 0, dets)
    every = all_events(client, admin, "cam-a")
    assert len(every) == 20 and ids(every) == sorted(ids(every))
    for limit in (1, 3, 7):
        assert ids(flat(pages(client, events_url("cam-a"), admin, limit=limit))) == ids(every)


def test_cursor_is_stable_while_events_arrive(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    ladder(store, "cam-a", 10)
    before = ids(all_events(client, admin, "cam-a"))
    page = client.get(events_url("cam-a"), headers=admin, params={"limit": 4}).json()
    got = ids(page["items"])
    ladder(store, "cam-a", 3, first=10)  # later events
    commit(store, "cam-a", 0, [("early", 0.0, 1.0, 0.5)], model="other-model")  # before the cursor
    cursor = page["next_cursor"]
    while cursor:
        page = client.get(events_url("cam-a"), headers=admin, params={"limit": 4, "cursor": cursor}).json()
        got += ids(page["items"])
        cursor = page["next_cursor"]
    after = ids(all_events(client, admin, "cam-a"))
    assert len(after) == 14 and len(got) == len(set(got)) == 13
    assert got[:10] == before and got == [i for i in after if i in set(got)], "no repeats, no skips, in order"


def test_expired_records_are_skipped(
    client: TestClient, admin: dict[str, str], store: ResultStore, redis_client: redis.Redis, keys: Keys
) -> None:
    ladder(store, "cam-a", 6)
    every = ids(all_events(client, admin, "cam-a"))
    redis_client.delete(keys.event("cam-a", every[1]), keys.event("cam-a", every[2]))
    assert ids(flat(pages(client, events_url("cam-a"), admin, limit=2))) == [every[0], *every[3:]]


def test_a_filtered_scan_stops_at_its_budget_and_goes_on(
    client: TestClient, admin: dict[str, str], store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ladder(store, "cam-a", 12)
    monkeypatch.setattr(results_route, "SCAN_BUDGET", 4)
    got = pages(client, events_url("cam-a"), admin, label="dog", limit=10)
    assert [e["start"] for e in flat(got)] == [13.0, 31.0, 49.0, 67.0]
    assert len(got) == 3 and all(len(p) <= 2 for p in got), "4 records read per request at most"


def test_span_index_narrows_the_read_without_changing_results(
    client: TestClient, admin: dict[str, str], store: ResultStore, redis_client: redis.Redis, keys: Keys
) -> None:
    for i in range(8):
        commit(
            store, "cam-a", i, [(LABELS[i % 3], 1.0, 2.0, 0.8), *([("long", 0.0, 8.0, 0.6)] if i < 3 else [])]
        )
    windows = [{"start": s, "end": s + 5} for s in (0, 11, 14, 19.5, 30, 44)]
    without = [ids(flat(pages(client, events_url("cam-a"), admin, **w))) for w in windows]
    longest = max(e["end"] - e["start"] for e in all_events(client, admin, "cam-a"))
    redis_client.zadd(results_route.spans_key(keys, "cam-a"), {"events": longest})  # what the writer keeps
    assert [ids(flat(pages(client, events_url("cam-a"), admin, **w))) for w in windows] == without
    assert without[2] and without[0]


# --- one event, segments, captions, streams -------------------------------------------------------------


def test_event_by_id_has_its_evidence(client: TestClient, admin: dict[str, str], store: ResultStore) -> None:
    commit(store, "cam-a", 0, [("fall", 6.0, 8.0, 0.6)])
    changes = commit(store, "cam-a", 1, [("fall", 0.0, 3.0, 0.9), ("car", 0.0, 1.0, 0.5)])
    event_id = next(c.event.event_id for c in changes if c.event.label == "fall")
    r = client.get(f"/v1/events/{event_id}", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["label"], body["start"], body["end"], body["confidence"]) == ("fall", 6.0, 9.0, 0.9)
    assert body["clip_ids"] == [clip("cam-a", 0).clip_id, clip("cam-a", 1).clip_id]
    assert body["frame_timestamps"] == [6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0]
    assert [e["clip_id"] for e in body["evidence"]] == body["clip_ids"]
    second = body["evidence"][1]
    assert (second["t_start"], second["t_end"]) == (6.0, 14.0)
    assert [(o["label"], o["start"], o["end"]) for o in second["observations"]] == [("fall", 6.0, 9.0)]


def test_event_by_id_404_and_403(client: TestClient, admin: dict[str, str], store: ResultStore) -> None:
    (change,) = commit(store, "cam-a", 0, [("fall", 1.0, 2.0, 0.6)])
    r = client.get("/v1/events/0123456789abcdef", headers=admin)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    other = make_key(client, admin, "cam-b*")
    r = client.get(f"/v1/events/{change.event.event_id}", headers=other)
    assert r.status_code == 403 and "cam-a" in r.json()["detail"]
    assert client.get(
        f"/v1/events/{change.event.event_id}", headers=make_key(client, admin, "cam-*")
    ).is_success


def test_segments_by_range(client: TestClient, admin: dict[str, str], store: ResultStore) -> None:
    spans: list[list[tuple[float, float, str]]] = [
        [(0, 5, "intro"), (5, 8, "slides")],
        [(0, 4, "slides"), (4, 8, "demo")],
        [(1.5, 8, "questions")],
    ]
    for i, segs in enumerate(spans):
        parsed = ParsedOutput(
            task="segments",
            ok=True,
            raw="x",
            segments=[Segment(start_s=a, end_s=b, title=t) for a, b, t in segs],
        )
        commit_other_task(store, "cam-a", i, parsed)
    url = "/v1/streams/cam-a/segments"

    def query(**params: float) -> list[tuple[float, float, str]]:
        return [(s["start"], s["end"], s["title"]) for s in flat(pages(client, url, admin, **params))]

    assert query() == [(0, 5, "intro"), (5, 10, "slides"), (10, 14, "demo"), (14, 20, "questions")]
    assert query(limit=1) == query()
    assert query(start=5, end=9) == [(0, 5, "intro"), (5, 10, "slides")]
    assert query(start=12, end=12) == [(10, 14, "demo")]
    assert query(start=21) == []


def test_captions_by_range(client: TestClient, admin: dict[str, str], store: ResultStore) -> None:
    for i in range(6):
        parsed = ParsedOutput(task="caption", ok=True, raw="x", caption=Caption(text=f"caption {i}"))
        commit_other_task(store, "cam-a", i, parsed)
    url = "/v1/streams/cam-a/captions"

    def query(**params: float) -> list[str]:
        return [c["text"] for c in flat(pages(client, url, admin, **params))]

    assert query() == [f"caption {i}" for i in range(6)]
    assert query(limit=4) == query(limit=1) == query()
    assert query(start=13, end=14) == ["caption 1", "caption 2"]  # 6-14 and 12-20
    assert query(start=29.5) == ["caption 4", "caption 5"]  # 24-32 and 30-38
    assert query(end=5.9) == ["caption 0"]


def test_streams_lists_what_the_key_may_see(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    for stream_id in ("cam-b", "cam-a", "lobby"):
        commit(store, stream_id, 0, [("x", 1.0, 2.0, 0.5)])
    assert client.get("/v1/streams", headers=admin).json() == {"items": ["cam-a", "cam-b", "lobby"]}
    key = make_key(client, admin, "cam-*")
    assert client.get("/v1/streams", headers=key).json() == {"items": ["cam-a", "cam-b"]}


# --- errors ---------------------------------------------------------------------------------------------


def test_keys_are_required_and_limited_to_their_streams(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    ladder(store, "cam-a", 2)
    for url in (
        "/v1/streams",
        events_url("cam-a"),
        "/v1/streams/cam-a/segments",
        "/v1/streams/cam-a/captions",
    ):
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    other = make_key(client, admin, "lobby")
    for suffix in ("events", "segments", "captions"):
        r = client.get(f"/v1/streams/cam-a/{suffix}", headers=other)
        assert r.status_code == 403 and r.json()["title"] == "Stream not allowed"
    mine = make_key(client, admin, "cam-a")
    assert len(client.get(events_url("cam-a"), headers=mine).json()["items"]) == 2


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"start": 10, "end": 5}, "query.start", "start (10) is after end (5)"),
        ({"wall_start": 2e9, "wall_end": 1e9}, "query.wall_start", "is after wall_end"),
        ({"state": "done"}, "query.state", "'done' is not one of 'open', 'closed'"),
        ({"limit": 0}, "query.limit", "0 is less than 1"),
        ({"limit": "ten"}, "query.limit", "'ten' is not an integer"),
        ({"limit": 501}, "query.limit", "at most 500 items per page"),
        ({"min_confidence": 1.5}, "query.min_confidence", "1.5 is more than 1"),
        ({"start": "nan"}, "query.start", "finite number"),
        ({"start": "soon"}, "query.start", "'soon' is not a number"),
        ({"cursor": "!!!"}, "query.cursor", "pass next_cursor back unchanged"),
    ],
)
def test_bad_parameters_are_422_with_a_clear_message(
    client: TestClient, admin: dict[str, str], params: dict[str, Any], field: str, says: str
) -> None:
    r = client.get(events_url("cam-a"), headers=admin, params=params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert any(e["field"] == field and says in e["message"] for e in body["errors"]), body
    assert says in body["detail"]


def test_a_cursor_only_continues_its_own_query(
    client: TestClient, admin: dict[str, str], store: ResultStore
) -> None:
    ladder(store, "cam-a", 4)
    cursor = client.get(events_url("cam-a"), headers=admin, params={"limit": 1}).json()["next_cursor"]
    r = client.get(events_url("cam-a"), headers=admin, params={"cursor": cursor, "label": "dog"})
    assert r.status_code == 422 and "belongs to another query" in r.json()["detail"]
    r = client.get("/v1/streams/cam-a/segments", headers=admin, params={"cursor": cursor})
    assert r.status_code == 422
    forged = base64.urlsafe_b64encode(b"2|1.0|x|y").decode()
    assert client.get(events_url("cam-a"), headers=admin, params={"cursor": forged}).status_code == 422


def test_bad_stream_id_is_422(client: TestClient, admin: dict[str, str]) -> None:
    r = client.get("/v1/streams/*/events", headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "path.stream_id"
