"""Ingest jobs in Redis: idempotent submission, leased claims, resume progress.

``JobStore`` is the one owner of a job's record, lease and index entries: the API and the ingest worker
read and write them only through it; the statuses and what pause, resume and cancel may start from are
defined here.

A request read from Kafka is written here first (keyed by job id, so a redelivered request is a no-op),
then its Kafka offset is committed. Running a job needs a lease (``SET NX PX``) that its worker renews;
a worker that dies stops renewing and any other worker takes the job over from its progress.

Redis Cluster: the job's record and lease share the hash tag ``{job id}``, so each script touches one slot;
the job index (``Keys.jobs``) is written by separate commands and readers skip ids without a record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

import redis

from vstream.names import Keys
from vstream.schema import IngestRequest

Status = Literal["queued", "running", "retry", "paused", "done", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = get_args(Status)
ACTIVE: tuple[Status, ...] = ("queued", "running", "retry")
# What the API's pause, resume and cancel may start from (cancelling a cancelled job is a no-op success).
PAUSABLE: tuple[Status, ...] = (*ACTIVE, "paused")
RESUMABLE: tuple[Status, ...] = ("paused",)
CANCELLABLE: tuple[Status, ...] = (*ACTIVE, "paused", "cancelled")

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# One step creates the record, so no reader sees a request without its status.
_SUBMIT = """
if redis.call('hsetnx', KEYS[1], 'request', ARGV[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], 'status', 'queued', 'attempts', 0, 'submitted_at', ARGV[2])
return 1
"""
# Compare-and-set of a job's status: only from one of the allowed states, so a finished job stays finished.
# ARGV: new status, updated_at, number of allowed old statuses, the old statuses, then field/value pairs.
# Returns {old status, 1 if changed else 0}, or nil when there is no job record.
_TRANSITION = """
if redis.call('type', KEYS[1]).ok ~= 'hash' then return false end
local current = redis.call('hget', KEYS[1], 'status')
if not current then return false end
local n = tonumber(ARGV[3])
for i = 4, 3 + n do
  if current == ARGV[i] then
    redis.call('hset', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[2])
    for j = 4 + n, #ARGV, 2 do redis.call('hset', KEYS[1], ARGV[j], ARGV[j + 1]) end
    return {current, 1}
  end
end
return {current, 0}
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# Undo a submission Kafka did not take, unless a worker already holds the job. Only the job's own keys
# (one hash slot): its index entries are removed afterwards, and readers skip ids whose record is gone.
_ROLLBACK = """
if redis.call('exists', KEYS[2]) == 1 or redis.call('hget', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('del', KEYS[1])
return 1
"""


@dataclass(frozen=True)
class AnalysisCounts:
    """The job's clips' analysis outcomes (``Keys.analysis_progress``, written by the result store)."""

    analysed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    complete: bool = False


@dataclass(frozen=True)
class JobState:
    request: IngestRequest
    status: Status
    attempts: int
    retry_at: float
    error: str
    acked_index: int
    submitted_at: float = 0.0
    updated_at: float | None = None
    live_found: bool | None = None  # what the worker found on opening the source; None before that
    analysis: AnalysisCounts = field(default_factory=AnalysisCounts)

    @property
    def live(self) -> bool:
        """Before a worker opened the source, a URL counts as live (it may turn out to be a file)."""
        return self.live_found if self.live_found is not None else "://" in self.request.source


@dataclass(frozen=True)
class Change:
    """Outcome of a compare-and-set of a job's status."""

    was: Status
    changed: bool


class JobStore:
    """Every read and write of a job's record, its lease and its index entries."""

    def __init__(self, client: redis.Redis, keys: Keys, lease_s: float) -> None:
        self.r, self.keys, self.lease_ms = client, keys, int(lease_s * 1000)
        self._renew = self.r.register_script(_RENEW)
        self._release = self.r.register_script(_RELEASE)
        self._transition = self.r.register_script(_TRANSITION)
        self._submit = self.r.register_script(_SUBMIT)
        self._rollback = self.r.register_script(_ROLLBACK)

    def submit(self, req: IngestRequest, *, index_stream: bool = False) -> bool:
        """Record a request; False when the job id already exists (a redelivery). ``index_stream`` also
        lists the job under its stream (``Keys.stream_jobs``), as the API does."""
        if not self._submit(keys=[self.keys.job(req.job_id)], args=[req.model_dump_json(), req.submitted_at]):
            return False
        self.r.zadd(self.keys.jobs, {req.job_id: req.submitted_at}, nx=True)
        if index_stream:
            self.r.sadd(self.keys.stream_jobs(req.stream_id), req.job_id)
        return True

    def rollback(self, req: IngestRequest) -> bool:
        """Remove a job Kafka did not take; False (and nothing removed) once a worker has taken it."""
        if not self._rollback(keys=[self.keys.job(req.job_id), self.keys.job_lease(req.job_id)]):
            return False
        self.r.zrem(self.keys.jobs, req.job_id)
        self.r.srem(self.keys.stream_jobs(req.stream_id), req.job_id)
        return True

    def get(self, job_id: str) -> JobState | None:
        return self.load([job_id])[0]

    def load(self, job_ids: Sequence[str]) -> list[JobState | None]:
        """States of jobs (None for missing ones) in two pipelined round trips."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        raws = pipe.execute(raise_on_error=False)  # a colliding non-hash key reads as no job
        found = [(_request(raw), raw) for raw in raws]
        pipe = self.r.pipeline(transaction=False)
        for req, _ in found:
            if req is not None:
                pipe.get(self.keys.ingest_progress(req.stream_id, req.params.params_hash))
                pipe.hgetall(self.keys.analysis_progress(req.stream_id, req.params.params_hash))
        progress = iter(pipe.execute())
        return [
            None if req is None else _state(req, raw, next(progress), next(progress)) for req, raw in found
        ]

    def page(self, top: float | str, offset: int, count: int) -> list[tuple[bytes, float]]:
        """Job-index entries (id, submission time) at or below ``top``, newest first."""
        out: list[tuple[bytes, float]] = self.r.zrevrangebyscore(  # type: ignore[assignment]
            self.keys.jobs, top, "-inf", start=offset, num=count, withscores=True
        )
        return out

    def stream_job_ids(self, stream_id: str) -> list[str]:
        """Ids of the jobs submitted for one stream through the API, sorted."""
        return sorted(_text(i) for i in self.r.smembers(self.keys.stream_jobs(stream_id)))

    def set_status(self, job_id: str, status: Status, **fields: object) -> None:
        self.record(job_id, status=status, updated_at=time.time(), **fields)

    def record(self, job_id: str, **fields: object) -> None:
        """Facts a worker learned while running the job (e.g. whether its source turned out to be live)."""
        self.r.hset(self.keys.job(job_id), mapping={k: _flat(v) for k, v in fields.items()})

    def change(
        self, job_id: str, status: Status, allowed_from: Sequence[Status], **fields: object
    ) -> Change | None:
        """Set ``status`` (and ``fields``) only if the job is in one of ``allowed_from``; None when there is
        no job record."""
        flat = [str(x) for k, v in fields.items() for x in (k, _flat(v))]
        args = [status, time.time(), len(allowed_from), *allowed_from, *flat]
        out = self._transition(keys=[self.keys.job(job_id)], args=args)
        if not out:
            return None
        return Change(was=cast(Status, _text(out[0])), changed=bool(int(out[1])))

    def transition(
        self, job_id: str, status: Status, allowed_from: tuple[Status, ...], **fields: object
    ) -> bool:
        """``change`` as a yes/no: a worker finishing a job never overwrites a pause or cancel that the API
        wrote a moment earlier."""
        done = self.change(job_id, status, allowed_from, **fields)
        return done is not None and done.changed

    def pause(self, job_id: str) -> Change | None:
        return self.change(job_id, "paused", PAUSABLE)

    def resume(self, job_id: str) -> Change | None:
        return self.change(job_id, "queued", RESUMABLE)

    def cancel(self, job_id: str) -> Change | None:
        return self.change(job_id, "cancelled", CANCELLABLE)

    def claim(self, job_id: str, owner: str) -> bool:
        return bool(self.r.set(self.keys.job_lease(job_id), owner, nx=True, px=self.lease_ms))

    def renew(self, job_id: str, owner: str) -> bool:
        return bool(self._renew(keys=[self.keys.job_lease(job_id)], args=[owner, self.lease_ms]))

    def release(self, job_id: str, owner: str) -> None:
        self._release(keys=[self.keys.job_lease(job_id)], args=[owner])

    def runnable(self, limit: int = 100) -> list[str]:
        """Active jobs nobody holds a lease on (new, retry due, or orphaned by a dead worker)."""
        now, out = time.time(), []
        for raw_id in self.r.zrange(self.keys.jobs, 0, -1):
            job_id = _text(raw_id)
            status, retry_at = self.r.hmget(self.keys.job(job_id), "status", "retry_at")
            if status is None or _text(status) not in ACTIVE or float(retry_at or 0) > now:
                continue
            if not self.r.exists(self.keys.job_lease(job_id)):
                out.append(job_id)
                if len(out) >= limit:
                    break
        return out

    def acked_index(self, req: IngestRequest) -> int:
        value = self.r.get(self.keys.ingest_progress(req.stream_id, req.params.params_hash))
        return int(value) if value is not None else -1

    def set_acked_index(self, req: IngestRequest, index: int) -> None:
        self.r.set(self.keys.ingest_progress(req.stream_id, req.params.params_hash), index)


# ---- the one parser of a job record ----------------------------------------------------------------------


def _request(raw: object) -> IngestRequest | None:
    if not isinstance(raw, dict) or b"request" not in raw:
        return None
    return IngestRequest.model_validate_json(raw[b"request"])


def _state(
    req: IngestRequest, raw: dict[bytes, bytes], acked: bytes | None, analysis: dict[bytes, bytes]
) -> JobState:
    updated = raw.get(b"updated_at")
    return JobState(
        request=req,
        status=cast(Status, _text(raw.get(b"status", b"queued"))),
        attempts=int(raw.get(b"attempts", 0)),
        retry_at=float(raw.get(b"retry_at", 0)),
        error=_text(raw.get(b"error", b"")),
        acked_index=int(acked) if acked is not None else -1,
        submitted_at=float(raw.get(b"submitted_at", req.submitted_at)),
        updated_at=float(updated) if updated is not None else None,
        live_found=raw[b"live"] == b"1" if b"live" in raw else None,
        analysis=AnalysisCounts(
            analysed=int(analysis.get(b"analysed", 0)),
            failed=int(analysis.get(b"failed", 0)),
            dead_lettered=int(analysis.get(b"dead_lettered", 0)),
            complete=analysis.get(b"complete") == b"1",
        ),
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flat(value: object) -> str | int | float:
    if isinstance(value, str | int | float):
        return value
    return json.dumps(value)
