"""ResultStore's per-job analysis progress, on the real Redis through the worker's write path."""

from __future__ import annotations

from typing import cast

import pytest
import redis

from tests.helpers.results import PARAMS, clip, commit, commit_other_task
from vstream.analysis.results import ParsedOutput
from vstream.config import Settings
from vstream.names import Keys
from vstream.store import ResultStore

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster]


def test_analysis_progress_counts_each_clip_once(redis_client: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis.key_prefix)
    store = ResultStore(redis_client, keys)
    commit(store, "cam", 0, [("person", 1.0, 2.0, 0.9)])
    commit(store, "cam", 1)
    commit(store, "cam", 0, [("person", 1.0, 2.0, 0.9)])  # redelivered: already written
    garbage = ParsedOutput(task="events", ok=False, raw="I cannot see", error="no JSON found in the answer")
    commit_other_task(store, "cam", 2, garbage)
    store.count_dead_letter(clip("cam", 3))
    progress = redis_client.hgetall(keys.analysis_progress("cam", PARAMS.params_hash))
    assert progress == {b"analysed": b"2", b"failed": b"1", b"dead_lettered": b"1"}
    commit(store, "cam", 4, last=True)
    assert redis_client.hget(keys.analysis_progress("cam", PARAMS.params_hash), "complete") == b"1"
    other = PARAMS.model_copy(update={"fps": 1.0}).params_hash
    assert not redis_client.exists(keys.analysis_progress("cam", other)), "per clip parameters"


def test_progress_expires_with_the_results(redis_client: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis.key_prefix)
    commit(ResultStore(redis_client, keys, retention_s=600), "cam", 0)
    ttl = int(redis_client.ttl(keys.analysis_progress("cam", PARAMS.params_hash)))
    assert 0 < ttl <= 600


def test_a_crash_before_the_all_streams_copy_is_caught_up_by_the_redelivery(
    redis_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The all-streams feed is filled after the stream's transaction (another hash slot on a cluster): a
    worker dying in between must not lose the change for /v1/feed and webhooks."""
    keys = Keys(settings.redis.key_prefix)
    store = ResultStore(redis_client, keys)
    with monkeypatch.context() as m:
        m.setattr(ResultStore, "relay_feed", lambda *a, **k: 0)  # the worker dies right after EXEC
        commit(store, "cam", 0, [("person", 1.0, 2.0, 0.9)])
    assert redis_client.xlen(keys.feed("cam")) == 1 and redis_client.xlen(keys.feed_all) == 0
    commit(store, "cam", 0, [("person", 1.0, 2.0, 0.9)])  # redelivered: a duplicate, but it relays
    commit(store, "cam", 0, [("person", 1.0, 2.0, 0.9)])  # and again: nothing more to copy
    feed_all = cast("list[tuple[bytes, dict[bytes, bytes]]]", redis_client.xrange(keys.feed_all))
    assert [f[b"kind"] for _, f in feed_all] == [b"open"]
    assert redis_client.smembers(keys.streams) == {b"cam"}


def test_an_event_is_found_by_its_id_alone(redis_client: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis.key_prefix)
    (change,) = commit(ResultStore(redis_client, keys, retention_s=600), "cam", 0, [("dog", 1.0, 2.0, 0.9)])
    event_id = change.event.event_id
    assert redis_client.get(keys.event_stream(event_id)) == b"cam"
    assert 0 < int(redis_client.ttl(keys.event_stream(event_id))) <= 600, "expires with the event"
    assert redis_client.exists(keys.event("cam", event_id), keys.thumbnail("cam", event_id)) == 2
