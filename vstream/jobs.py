"""Ingest jobs in Redis: idempotent submission, leased claims, resume progress.

A request read from Kafka is written here first (keyed by job id, so a redelivered request is a no-op),
then its Kafka offset is committed. Running a job needs a lease (``SET NX PX``) that its worker renews;
a worker that dies stops renewing and any other worker takes the job over from its progress.

Redis Cluster: the job's record and lease share the hash tag ``{job id}``, so each script touches one slot;
the job index (``Keys.jobs``) is written by separate commands and readers skip ids without a record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

import redis

from vstream.names import Keys
from vstream.schema import IngestRequest

Status = Literal["queued", "running", "retry", "paused", "done", "failed", "cancelled"]
ACTIVE: tuple[Status, ...] = ("queued", "running", "retry")

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# ARGV: new status, updated_at, number of allowed old statuses, the old statuses, then field/value pairs.
_TRANSITION = """
local current = redis.call('hget', KEYS[1], 'status')
local n = tonumber(ARGV[3])
for i = 4, 3 + n do
  if current == ARGV[i] then
    redis.call('hset', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[2])
    for j = 4 + n, #ARGV, 2 do redis.call('hset', KEYS[1], ARGV[j], ARGV[j + 1]) end
    return 1
  end
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class JobState:
    request: IngestRequest
    status: Status
    attempts: int
    retry_at: float
    error: str
    acked_index: int


class JobStore:
    def __init__(self, client: redis.Redis, keys: Keys, lease_s: float) -> None:
        self.r, self.keys, self.lease_ms = client, keys, int(lease_s * 1000)
        self._renew = self.r.register_script(_RENEW)
        self._release = self.r.register_script(_RELEASE)
        self._transition = self.r.register_script(_TRANSITION)

    def submit(self, req: IngestRequest) -> bool:
        """Record a request; False when the job id already exists (a redelivery)."""
        key = self.keys.job(req.job_id)
        if not self.r.hsetnx(key, "request", req.model_dump_json()):
            return False
        self.r.hset(key, mapping={"status": "queued", "attempts": 0, "submitted_at": req.submitted_at})
        self.r.zadd(self.keys.jobs, {req.job_id: req.submitted_at}, nx=True)
        return True

    def get(self, job_id: str) -> JobState | None:
        raw = self.r.hgetall(self.keys.job(job_id))
        if not raw or b"request" not in raw:
            return None
        req = IngestRequest.model_validate_json(raw[b"request"])
        return JobState(
            request=req,
            status=_text(raw.get(b"status", b"queued")),  # type: ignore[arg-type]
            attempts=int(raw.get(b"attempts", 0)),
            retry_at=float(raw.get(b"retry_at", 0)),
            error=_text(raw.get(b"error", b"")),
            acked_index=self.acked_index(req),
        )

    def set_status(self, job_id: str, status: Status, **fields: object) -> None:
        self.record(job_id, status=status, updated_at=time.time(), **fields)

    def record(self, job_id: str, **fields: object) -> None:
        """Facts a worker learned while running the job (e.g. whether its source turned out to be live)."""
        self.r.hset(self.keys.job(job_id), mapping={k: _flat(v) for k, v in fields.items()})

    def transition(
        self, job_id: str, status: Status, allowed_from: tuple[Status, ...], **fields: object
    ) -> bool:
        """Set ``status`` (and ``fields``) only if the job is in one of ``allowed_from``: a worker finishing
        a job never overwrites a pause or cancel that the API wrote a moment earlier."""
        flat = [str(x) for k, v in fields.items() for x in (k, _flat(v))]
        args = [status, time.time(), len(allowed_from), *allowed_from, *flat]
        return bool(self._transition(keys=[self.keys.job(job_id)], args=args))

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


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flat(value: object) -> str | int | float:
    if isinstance(value, str | int | float):
        return value
    return json.dumps(value)
