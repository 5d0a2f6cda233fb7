"""Job records and leases on the real Redis server."""

from __future__ import annotations

import time

import pytest
import redis

from vstream.config import Settings
from vstream.jobs import JobStore
from vstream.names import Keys
from vstream.schema import IngestRequest

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster]


@pytest.fixture
def jobs(settings: Settings, redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, Keys(settings.redis.key_prefix), lease_s=1.0)


def req(job_id: str = "j1") -> IngestRequest:
    return IngestRequest(job_id=job_id, stream_id="cam", source="/data/a.mp4")


def test_submit_is_idempotent(jobs: JobStore) -> None:
    assert jobs.submit(req()) is True
    jobs.set_status("j1", "running")
    assert jobs.submit(req()) is False
    state = jobs.get("j1")
    assert state is not None and state.status == "running", "a redelivered request does not reset the job"


def test_only_one_owner_holds_a_lease_and_it_expires(jobs: JobStore) -> None:
    jobs.submit(req())
    assert jobs.claim("j1", "a") and not jobs.claim("j1", "b")
    assert jobs.renew("j1", "a") and not jobs.renew("j1", "b")
    assert jobs.runnable() == []
    time.sleep(1.2)
    assert jobs.runnable() == ["j1"], "an expired lease makes the job runnable again"
    assert jobs.claim("j1", "b")
    jobs.release("j1", "a")  # not the owner: no effect
    assert not jobs.claim("j1", "c")
    jobs.release("j1", "b")
    assert jobs.claim("j1", "c")


def test_finished_and_delayed_jobs_are_not_runnable(jobs: JobStore) -> None:
    for job_id in ("done", "retry-later", "retry-now", "failed"):
        jobs.submit(req(job_id))
    jobs.set_status("done", "done")
    jobs.set_status("failed", "failed")
    jobs.set_status("retry-later", "retry", retry_at=time.time() + 60)
    jobs.set_status("retry-now", "retry", retry_at=time.time() - 1)
    assert jobs.runnable() == ["retry-now"]


def test_progress_is_per_stream_and_parameters(jobs: JobStore) -> None:
    r = req()
    assert jobs.acked_index(r) == -1
    jobs.set_acked_index(r, 41)
    assert jobs.acked_index(r) == 41
    other = IngestRequest(job_id="j2", stream_id="cam", source="/data/a.mp4", params={"fps": 1.0})
    assert jobs.acked_index(other) == -1


def test_transition_only_from_allowed_states(jobs: JobStore) -> None:
    jobs.submit(req())
    assert jobs.transition("j1", "running", ("queued",), owner="w1")
    jobs.set_status("j1", "paused")  # the API pauses it while the worker runs
    assert not jobs.transition("j1", "done", ("running",)), "the worker must not overwrite the pause"
    state = jobs.get("j1")
    assert state is not None and state.status == "paused"
    assert jobs.r.hget(jobs.keys.job("j1"), "owner") == b"w1"
