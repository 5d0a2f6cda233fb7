"""Analysis jobs: submit a file or live stream, list and inspect jobs, pause, resume, cancel.

A submitted job is written to Redis first (so it is visible at once), then sent to the ingest-requests
topic; the ingest worker's own write of the same job id is a no-op. If Kafka does not acknowledge, the
record is removed again (unless a worker already took it) and the caller gets 503: retrying with the same
``Idempotency-Key`` is then safe.

Visibility: a key sees the jobs of the streams its patterns match. A job of another stream answers 404,
exactly like an unknown id, so job ids of other tenants cannot be probed. Naming a stream the key may not
use (``stream_id`` in a body or a query) answers 403.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Response
from kafka.errors import KafkaError
from pydantic import ValidationError

from api.deps import Caller, Res, Resources, require_stream
from api.keys import Principal
from api.problems import Problem
from api.schemas.jobs import JOB_CREATE_EXAMPLES, JobCreate, JobList, JobProgress, JobView
from api.schemas.keys import AUTH_ERRORS, JSON_BODY_ERRORS, problem_doc
from api.security import refuse, validate_file_source, validate_source_url
from vstream.jobs import Change, JobState, Status
from vstream.schema import ClipParams, IngestRequest, redact_url

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ACK_TIMEOUT_S = 10.0  # longest a submission waits for Kafka
_SCAN_BATCH = 200
_MAX_SCAN = 5000  # job-index entries one list request examines; past that it returns a cursor

_NOT_FOUND = problem_doc(404, "No such job (or not one of your streams)", "No such job", "no job 'job-1'")
_STREAM_403 = problem_doc(
    403, "The key may not use this stream", "Stream not allowed", "this key may not access stream 'lobby'"
)
_CONFLICT = problem_doc(
    409,
    "The job's status does not allow this",
    "Job not pausable",
    "job 'job-1' is done; only queued, running or retrying jobs can be paused",
)
_INVALID = problem_doc(
    422,
    "A field is invalid, the source is refused, or the Idempotency-Key was used for another request",
    "Source not allowed",
    "source: host '127.0.0.1' resolves to 127.0.0.1, a loopback address; only public hosts are allowed",
)
JobId = Annotated[str, Path(description="The job's id.", examples=["job-5f0c6d3e9a7b4c1d8e2f3a4b5c6d7e8f"])]


# ---- submit ----------------------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=JobView,
    summary="Submit an analysis job",
    responses={
        200: {"description": "Replay of an Idempotency-Key already used: the existing job", "model": JobView},
        **AUTH_ERRORS,
        403: _STREAM_403,
        409: problem_doc(
            409,
            "The job id is taken by something else (practically never)",
            "Job id in use",
            "job id 'job-1' is in use; use another Idempotency-Key",
        ),
        **JSON_BODY_ERRORS,
        422: _INVALID,
        503: problem_doc(
            503,
            "Kafka did not take the job (retry with the same Idempotency-Key), or this API instance is "
            "read-only",
            "Queue unavailable",
            "the job queue (Kafka) did not acknowledge: KafkaTimeoutError",
        ),
    },
)
async def submit_job(
    body: Annotated[
        JobCreate,
        Body(openapi_examples={name: {"value": value} for name, value in JOB_CREATE_EXAMPLES.items()}),
    ],
    res: Res,
    caller: Caller,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Any unique string (a UUID): sending it again returns the same job (200).",
        ),
    ] = None,
) -> JobView:
    require_stream(caller, body.stream_id)
    if res.producer is None:
        raise Problem(503, "Job submission disabled", "this API instance serves queries only (kafka=False)")
    req, created = await asyncio.to_thread(_record, res, body, idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{req.job_id}"
    if not created:
        response.status_code = 200
        return await asyncio.to_thread(_existing, res, req.job_id)
    try:
        await asyncio.wait_for(asyncio.to_thread(_produce, res, req), ACK_TIMEOUT_S + 1)
    except (KafkaError, TimeoutError) as exc:
        reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        if await asyncio.to_thread(res.jobs.rollback, req):
            logger.warning("job %s not queued, Kafka did not acknowledge: %s", req.job_id, reason)
            raise Problem(
                503,
                "Queue unavailable",
                f"the job queue (Kafka) did not acknowledge ({reason}); retry with the same Idempotency-Key",
            ) from exc
        logger.warning(
            "job %s: Kafka failed (%s) but a worker already took the job from Redis", req.job_id, reason
        )
    logger.info("job %s submitted for stream %s (%s)", req.job_id, req.stream_id, req.task)
    return await asyncio.to_thread(_existing, res, req.job_id)


def _record(res: Resources, body: JobCreate, idempotency_key: str | None) -> tuple[IngestRequest, bool]:
    """Validate the source, write the job to Redis; (request, False) for a replayed Idempotency-Key."""
    source = _checked_source(body.source, res)
    if idempotency_key is None:
        job_id = f"job-{uuid.uuid4().hex}"
    else:  # scoped by stream: the same key on two streams gives two jobs
        job_id = "job-" + hashlib.sha256(f"{body.stream_id}\x00{idempotency_key}".encode()).hexdigest()[:32]
    clips = res.settings.clips
    params = body.params or ClipParams(
        fps=clips.fps,
        clip_seconds=clips.clip_seconds,
        overlap_seconds=clips.overlap_seconds,
        max_side=clips.max_side,
    )
    try:
        req = IngestRequest(
            job_id=job_id,
            stream_id=body.stream_id,
            source=source,
            params=params,
            gate=body.gate,
            realtime=body.realtime,
            task=body.task,
            event_types=list(body.event_types),
            preset=body.preset,
            sport=body.sport if body.preset == "sports" else None,
            retention_s=body.retention_s,
        )
    except ValidationError as exc:
        raise refuse("body", exc.errors()[0]["msg"]) from exc
    if res.jobs.submit(req, index_stream=True):
        return req, True
    state = res.jobs.get(job_id)
    if state is None:  # only possible for a colliding non-job key
        raise Problem(409, "Job id in use", f"job id {job_id!r} is in use; use another Idempotency-Key")
    skip = {"job_id", "submitted_at"}
    if state.request.model_dump(exclude=skip) != req.model_dump(exclude=skip):
        raise refuse(
            "header.idempotency-key",
            "this key was used for a different request; send the same body again, or use a new key",
        )
    return state.request, False


def _checked_source(source: str, res: Resources) -> str:
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme and scheme != "file":
        return validate_source_url(source, res.settings.api)
    return str(validate_file_source(source, res.settings.api))


def _produce(res: Resources, req: IngestRequest) -> None:
    assert res.producer is not None
    future = res.producer.send(
        res.topics.ingest_requests, key=req.stream_id.encode(), value=req.model_dump_json().encode()
    )
    future.get(timeout=ACK_TIMEOUT_S)


# ---- read ------------------------------------------------------------------------------------------------


@router.get(
    "",
    response_model=JobList,
    summary="List jobs, newest first",
    responses={
        **AUTH_ERRORS,
        403: _STREAM_403,
        422: problem_doc(
            422, "A bad filter, limit or cursor", "Invalid request", "limit: must be between 1 and 500"
        ),
    },
)
def list_jobs(
    res: Res,
    caller: Caller,
    stream_id: Annotated[str | None, Query(description="Only this stream's jobs.")] = None,
    status: Annotated[Status | None, Query(description="Only jobs in this status.")] = None,
    limit: Annotated[int, Query(description="Jobs per page (at most the server's page_limit_max).")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> JobList:
    """A page may hold fewer than ``limit`` jobs and still have a next_cursor: follow it until null."""
    top = res.settings.api.page_limit_max
    if not 1 <= limit <= top:
        raise refuse("query.limit", f"must be between 1 and {top}")
    if stream_id is not None:
        require_stream(caller, stream_id)
    anchor = _decode_cursor(cursor) if cursor else None

    def wanted(view: JobView) -> bool:
        return (
            caller.may_see(view.stream_id)
            and (stream_id is None or view.stream_id == stream_id)
            and (status is None or view.status == status)
        )

    found, next_anchor = _scan(res, anchor, limit, wanted)
    return JobList(
        items=[v for _, v in found], next_cursor=_encode_cursor(next_anchor) if next_anchor else None
    )


@router.get(
    "/{job_id}",
    response_model=JobView,
    summary="One job: status and progress",
    responses={**AUTH_ERRORS, 404: _NOT_FOUND},
)
def get_job(job_id: JobId, res: Res, caller: Caller) -> JobView:
    return _visible(res, caller, job_id)


def _visible(res: Resources, caller: Principal, job_id: str) -> JobView:
    """The job, or 404 when it does not exist or belongs to a stream the caller may not see."""
    view = _load(res, [job_id.encode()])[0]
    if view is None or not caller.may_see(view.stream_id):
        raise Problem(404, "No such job", f"no job {job_id!r} (among the streams this key may access)")
    return view


def _existing(res: Resources, job_id: str) -> JobView:
    view = _load(res, [job_id.encode()])[0]
    if view is None:  # removed between the write and this read (a cancel cannot remove it)
        raise Problem(404, "No such job", f"no job {job_id!r}")
    return view


def _load(res: Resources, job_ids: list[bytes]) -> list[JobView | None]:
    return [None if s is None else _view(s) for s in res.jobs.load([i.decode() for i in job_ids])]


def _view(state: JobState) -> JobView:
    req, analysis = state.request, state.analysis
    clips = state.acked_index + 1
    progress = JobProgress(
        clips_acked=clips,
        media_seconds=round(clips * req.params.step_seconds, 3),
        clips_analysed=analysis.analysed,
        clips_failed=analysis.failed,
        clips_dead_lettered=analysis.dead_lettered,
        analysis_complete=analysis.complete,
    )
    return JobView(
        job_id=req.job_id,
        stream_id=req.stream_id,
        source=redact_url(req.source),
        task=req.task,
        event_types=list(req.event_types),
        params=req.params,
        gate=req.gate,
        realtime=req.realtime,
        status=state.status,
        error=state.error,
        attempts=state.attempts,
        progress=progress,
        submitted_at=state.submitted_at,
        updated_at=state.updated_at,
        live=state.live,
    )


# ---- pagination over the job index (a sorted set by submission time, read newest first) ----------------

Anchor = tuple[float, bytes]  # (score, job id) of the last entry a page covered


def _scan(
    res: Resources, anchor: Anchor | None, limit: int, wanted: Callable[[JobView], bool]
) -> tuple[list[tuple[Anchor, JobView]], Anchor | None]:
    """Up to ``limit`` wanted jobs after ``anchor``, and the anchor of the next page (None at the end)."""
    top = anchor[0] if anchor else "+inf"
    found: list[tuple[Anchor, JobView]] = []
    seen: set[bytes] = set()
    offset = scanned = 0
    last: Anchor | None = None
    while len(found) <= limit and scanned < _MAX_SCAN:
        batch = res.jobs.page(top, offset, _SCAN_BATCH)
        offset += len(batch)
        fresh = [(m, s) for m, s in batch if m not in seen and not _covered((s, m), anchor)]
        seen.update(m for m, _ in fresh)
        for (member, score), view in zip(fresh, _load(res, [m for m, _ in fresh]), strict=True):
            scanned += 1
            last = (score, member)
            if view is not None and wanted(view):
                found.append((last, view))
                if len(found) > limit:
                    return found[:limit], found[limit - 1][0]
        if len(batch) < _SCAN_BATCH:
            return found, None
    return found, last  # scan budget spent: continue from the last entry examined


def _covered(entry: Anchor, anchor: Anchor | None) -> bool:
    """True for entries at or before the anchor (same score: Redis orders members in reverse)."""
    return anchor is not None and entry[0] == anchor[0] and entry[1] >= anchor[1]


def _encode_cursor(anchor: Anchor) -> str:
    return base64.urlsafe_b64encode(json.dumps([anchor[0], anchor[1].decode()]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Anchor:
    try:
        score, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(score), str(job_id).encode()
    except (ValueError, TypeError) as exc:
        raise refuse(
            "query.cursor", "not a cursor from this API; pass next_cursor of the previous page"
        ) from exc


# ---- pause, resume, cancel -------------------------------------------------------------------------------


@router.post(
    "/{job_id}/pause",
    response_model=JobView,
    summary="Pause a job (its worker stops it)",
    responses={**AUTH_ERRORS, 404: _NOT_FOUND, 409: _CONFLICT},
)
def pause_job(job_id: JobId, res: Res, caller: Caller) -> JobView:
    _transition(res, caller, job_id, res.jobs.pause, "paused")
    return _visible(res, caller, job_id)


@router.post(
    "/{job_id}/resume",
    response_model=JobView,
    summary="Resume a paused job",
    responses={
        **AUTH_ERRORS,
        404: _NOT_FOUND,
        409: problem_doc(
            409,
            "The job is not paused",
            "Job not paused",
            "job 'job-1' is running; only a paused job can be resumed",
        ),
    },
)
def resume_job(job_id: JobId, res: Res, caller: Caller) -> JobView:
    _transition(res, caller, job_id, res.jobs.resume, "resumed")
    return _visible(res, caller, job_id)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Cancel a job",
    responses={
        **AUTH_ERRORS,
        404: _NOT_FOUND,
        409: problem_doc(
            409,
            "The job already finished",
            "Job not cancellable",
            "job 'job-1' is done; finished jobs cannot be cancelled",
        ),
    },
)
def cancel_job(job_id: JobId, res: Res, caller: Caller) -> Response:
    """Idempotent: cancelling a cancelled job answers 204 again. The job record stays, as 'cancelled'."""
    _transition(res, caller, job_id, res.jobs.cancel, "cancelled")
    return Response(status_code=204)


# verb -> (title of the 409, what the job's status must be)
_REFUSALS = {
    "paused": ("Job not pausable", "only queued, running or retrying jobs can be paused"),
    "resumed": ("Job not paused", "only a paused job can be resumed"),
    "cancelled": ("Job not cancellable", "finished jobs cannot be cancelled"),
}


def _transition(
    res: Resources, caller: Principal, job_id: str, change: Callable[[str], Change | None], verb: str
) -> None:
    _visible(res, caller, job_id)  # 404 before anything changes
    done = change(job_id)
    if done is None:
        raise Problem(404, "No such job", f"no job {job_id!r}")
    if not done.changed:
        title, needs = _REFUSALS[verb]
        raise Problem(409, title, f"job {job_id!r} is {done.was}; {needs}", status_now=done.was)
    logger.info("job %s %s (was %s) by key %r", job_id, verb, done.was, caller.name)
