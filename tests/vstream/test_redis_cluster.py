"""Redis Cluster safety: each stream's keys share one hash slot, and every Lua script and MULTI/EXEC in the
code runs on the real 3-master cluster (a CROSSSLOT error, or redis-py's CrossSlotTransactionError, fails
these tests)."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from api.routes import results as results_route
from tests.helpers.results import PARAMS, commit
from vstream.config import Settings
from vstream.jobs import Change, JobStore
from vstream.names import Keys
from vstream.redis_conn import connect, delete_matching, is_cluster
from vstream.schema import IngestRequest
from vstream.store import ResultStore
from vstream.webhook_records import DeliveryRecord
from vstream.webhooks import Dispatcher

REPO = Path(__file__).resolve().parents[2]
ON_CLUSTER = pytest.mark.parametrize("redis_backend", ["cluster"], indirect=True)


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def stream_keys(keys: Keys, stream_id: str) -> dict[str, str]:
    """Every key name Keys builds for a stream: each method whose first parameter is ``stream_id``."""
    out = {}
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        params = list(inspect.signature(method).parameters)
        if params and params[0] == "stream_id":
            out[name] = method(stream_id, *(f"x{i}" for i in range(len(params) - 1)))
    return out


def test_every_key_of_a_stream_is_in_its_slot() -> None:
    keys = Keys("vs:")
    names = stream_keys(keys, "cam-1")
    assert {"result", "event", "feed", "tracker", "analysis_progress", "stream_jobs"} <= set(names)
    assert {slot(k) for k in names.values()} == {slot("{cam-1}")}, names
    other = {slot(k) for k in stream_keys(keys, "cam-2").values()}
    assert other == {slot("{cam-2}")} != {slot("{cam-1}")}, "streams spread over slots"


def test_a_jobs_and_a_webhooks_keys_share_their_slot() -> None:
    keys = Keys("vs:")
    assert slot(keys.job("j-1")) == slot(keys.job_lease("j-1"))
    hook = [keys.webhook_queue("w"), keys.webhook_deliveries("w"), keys.webhook_delivery("w", "dl_1")]
    assert len({slot(k) for k in hook}) == 1


def test_a_brace_in_the_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="hash tags"):
        Keys("vs:{x}:")


# Every Lua script in the code, by module and constant name; each is run on the cluster below, or (the
# webhook worker's lease) by tests/workers/test_webhook_worker.py, a redis_cluster module. A new script
# fails test_every_script_is_covered until it is added here and to a test.
COVERED = {
    ("vstream/jobs.py", "_RENEW"),
    ("vstream/jobs.py", "_TRANSITION"),
    ("vstream/jobs.py", "_RELEASE"),
    ("vstream/webhook_store.py", "_ENQUEUE"),
    ("vstream/webhook_store.py", "_SETTLE"),
    ("vstream/jobs.py", "_SUBMIT"),
    ("vstream/jobs.py", "_ROLLBACK"),
    ("api/routes/results.py", "PAGE_LUA"),
    ("workers/webhook_worker.py", "_RENEW"),
    ("workers/webhook_worker.py", "_RELEASE"),
}
SCRIPT = re.compile(r'^(_?[A-Z][A-Z_]*) = """(.*?)"""', re.S | re.M)


def test_every_script_is_covered() -> None:
    found = set()
    for root in ("vstream", "api", "workers"):
        for path in (REPO / root).rglob("*.py"):
            for name, body in SCRIPT.findall(path.read_text()):
                if "redis.call" in body:
                    found.add((str(path.relative_to(REPO)), name))
    assert found == COVERED


@pytest.fixture
def cluster(redis_client: redis.Redis) -> redis.Redis:
    assert is_cluster(redis_client), "these tests must run on the cluster"
    return redis_client


def request(job_id: str, stream_id: str = "cam-1") -> IngestRequest:
    return IngestRequest(job_id=job_id, stream_id=stream_id, source="file:///x.mp4", params=PARAMS)


@pytest.mark.integration
@ON_CLUSTER
def test_job_scripts_run_on_the_cluster(cluster: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis.key_prefix)
    jobs = JobStore(cluster, keys, lease_s=5)
    assert jobs.submit(request("j-1")) and not jobs.submit(request("j-1"))
    assert jobs.runnable() == ["j-1"]
    assert jobs.claim("j-1", "w1") and jobs.renew("j-1", "w1") and not jobs.renew("j-1", "w2")
    assert jobs.transition("j-1", "running", ("queued",), owner="w1")
    jobs.release("j-1", "w1")
    assert not cluster.exists(keys.job_lease("j-1"))
    assert jobs.pause("j-1") == Change(was="running", changed=True)
    # the API's rollback of a submission Kafka did not take (job, lease, index, stream set: three slots)
    assert jobs.submit(request("j-2", "cam-2"), index_stream=True)
    assert cluster.sismember(keys.stream_jobs("cam-2"), "j-2")
    assert jobs.rollback(request("j-2", "cam-2"))
    assert jobs.get("j-2") is None and not cluster.sismember(keys.stream_jobs("cam-2"), "j-2")
    assert cluster.zscore(keys.jobs, "j-2") is None


@pytest.mark.integration
@ON_CLUSTER
def test_a_commit_and_a_page_run_on_the_cluster(cluster: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis.key_prefix)
    store = ResultStore(cluster, keys)
    opened = commit(store, "cam-1", 0, [("person", 1.0, 2.0, 0.9)])  # one MULTI/EXEC, optimistic lock
    commit(store, "cam-2", 0, [("car", 1.0, 2.0, 0.9)])
    assert [c.kind for c in opened] == ["open"]
    assert cluster.xlen(keys.feed("cam-1")) == 1 and cluster.xlen(keys.feed_all) == 2, "relayed"
    assert cluster.smembers(keys.streams) == {b"cam-1", b"cam-2"}
    event_id = opened[0].event.event_id
    assert cluster.get(keys.event_stream(event_id)) == b"cam-1"
    args = ("events", "", "+inf", "", b"", 10, keys.event("cam-1", ""), "", 100, "")
    reply: Any = cluster.eval(results_route.PAGE_LUA, 2, keys.events("cam-1"), keys.spans("cam-1"), *args)
    assert event_id.encode() in reply[0]


@pytest.mark.integration
@ON_CLUSTER
def test_webhook_scripts_run_on_the_cluster(cluster: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis.key_prefix)

    async def run() -> None:
        d = Dispatcher(settings)
        r, store = d.redis, d.store
        rec = DeliveryRecord(
            delivery_id="dl_1",
            webhook_id="wh_1",
            stream_id="cam-1",
            entry_id="1-0",
            event_id="e1",
            kind="open",
            next_attempt_at=100.0,
            body="{}",
        )
        assert await store.enqueue_all([rec]) == 1 and await store.enqueue_all([rec]) == 0, "idempotent"
        assert await r.zscore(keys.webhook_due, "wh_1") == 100.0
        await store.save("wh_1", "dl_1", rec, 200.0)  # a retry later
        assert await r.zscore(keys.webhook_due, "wh_1") == 200.0
        await store.save("wh_1", "dl_1", None, None)  # settled: the queue is empty
        assert await r.zscore(keys.webhook_due, "wh_1") is None
        await r.zadd(keys.webhook_due, {"wh_1": 1.0})  # left by a crash between a script and its due update
        await d._start_due()
        assert await r.zscore(keys.webhook_due, "wh_1") is None, "repaired from the (empty) queue"
        await r.aclose()

    asyncio.run(run())


@pytest.mark.integration
@ON_CLUSTER
def test_cleanup_scans_every_primary(settings: Settings) -> None:
    client, keys = connect(settings.redis), Keys(settings.redis.key_prefix)
    names = [keys.feed(f"s{i}") for i in range(30)]
    for name in names:
        client.set(name, 1)
    nodes = {client.get_node_from_key(n).name for n in names}  # type: ignore[attr-defined]
    assert len(nodes) == 3, "the keys span every primary"
    assert delete_matching(client, keys.pattern) == 30
    assert not any(client.exists(n) for n in names)
