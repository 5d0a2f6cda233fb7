"""Job records and leases on the real Redis server."""

from __future__ import annotations

import time

import pytest
import redis

from vstream.config import Settings
from vstream.jobs import ACTIVE, Change, JobStore
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


def test_submit_writes_record_and_index_in_one_step(jobs: JobStore) -> None:
    r = req()
    assert jobs.submit(r, index_stream=True)
    state = jobs.get("j1")
    assert state is not None and (state.status, state.attempts, state.acked_index) == ("queued", 0, -1)
    assert state.submitted_at == r.submitted_at and state.updated_at is None
    assert jobs.page("+inf", 0, 10) == [(b"j1", r.submitted_at)]
    assert jobs.stream_job_ids("cam") == ["j1"]
    again = r.model_copy(update={"source": "/data/other.mp4"})
    assert not jobs.submit(again, index_stream=True), "same id: a no-op"
    state = jobs.get("j1")
    assert state is not None and state.request.source == "/data/a.mp4"


def test_load_parses_the_record_and_skips_missing_jobs(jobs: JobStore) -> None:
    jobs.submit(IngestRequest(job_id="url", stream_id="cam", source="https://example.com/a.mp4"))
    jobs.submit(req("file"))
    jobs.record("file", live=1)
    url, missing, file = jobs.load(["url", "nope", "file"])
    assert missing is None and url is not None and file is not None
    assert url.live and url.live_found is None, "a URL counts as live until a worker opened it"
    jobs.record("url", live=0)
    assert (jobs.get("url") or url).live is False and file.live is True


def test_pause_resume_cancel(jobs: JobStore) -> None:
    jobs.submit(req())
    assert jobs.pause("j1") == Change(was="queued", changed=True)
    assert jobs.pause("j1") == Change(was="paused", changed=True), "pausing a paused job is allowed"
    assert jobs.resume("j1") == Change(was="paused", changed=True)
    assert jobs.resume("j1") == Change(was="queued", changed=False), "only a paused job resumes"
    assert jobs.cancel("j1") == Change(was="queued", changed=True)
    assert jobs.cancel("j1") == Change(was="cancelled", changed=True), "idempotent"
    assert jobs.pause("j1") == Change(was="cancelled", changed=False)
    state = jobs.get("j1")
    assert state is not None and state.status == "cancelled" and state.updated_at is not None
    assert jobs.pause("nope") is None and jobs.cancel("nope") is None


def test_finished_jobs_refuse_every_change(jobs: JobStore) -> None:
    jobs.submit(req())
    jobs.set_status("j1", "done")
    for change in (jobs.pause, jobs.resume, jobs.cancel):
        assert change("j1") == Change(was="done", changed=False)
    assert not jobs.transition("j1", "running", ACTIVE)


def test_rollback_removes_an_untaken_job_only(jobs: JobStore) -> None:
    jobs.submit(req("a"), index_stream=True)
    jobs.submit(req("b"), index_stream=True)
    assert jobs.claim("b", "w1")
    assert jobs.rollback(req("a"))
    assert jobs.get("a") is None and jobs.stream_job_ids("cam") == ["b"]
    assert [m for m, _ in jobs.page("+inf", 0, 10)] == [b"b"]
    assert not jobs.rollback(req("b")), "a worker holds it"
    jobs.release("b", "w1")
    jobs.set_status("b", "running")
    assert not jobs.rollback(req("b")), "no longer queued"
    assert jobs.get("b") is not None
