"""Journey endpoints: alert thumbnails, sports highlights and reels, lecture summaries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Caller, Res, load_event, require_stream
from api.problems import Problem
from api.schemas.jobs import DEFAULT_SPORT
from api.schemas.keys import JSON_BODY_ERRORS
from vstream.analysis.records import Event
from vstream.journeys.highlights import Highlight, export_reel, rank
from vstream.journeys.lecture import LectureSummary, summarize, to_markdown
from vstream.model.base import Generation
from vstream.presets import SPORT_EVENTS
from vstream.schema import STREAM_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["journeys"])
StreamId = Annotated[str, PathParam(pattern=STREAM_ID_PATTERN, description="Stream id")]
_MAX_EVENTS = 20_000


class Highlights(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sport": "soccer",
                    "items": [
                        {
                            "rank": 1,
                            "event_id": "3f2a9c1d0b7e4a55",
                            "label": "goal",
                            "start": 1261.0,
                            "end": 1272.5,
                            "score": 0.93,
                            "confidence": 0.9,
                            "description": "A header into the top corner.",
                        }
                    ],
                }
            ]
        }
    )
    sport: str | None = Field(
        description="The sport whose table ranked the items: ?sport=, else the one the stream's sports job "
        "used; null when the stream was not ingested with the sports preset (items is then empty)."
    )
    items: list[Highlight]


class ReelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"k": 5, "sport": "soccer"}]})
    k: int = Field(5, ge=1, le=50, description="How many top highlights go into the reel.")
    sport: str | None = Field(None, description="Highlight table (default: the sport of the stream's job).")


class Reel(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"url": "/v1/streams/match-42/reel.mp4", "duration_s": 42.5, "highlights": []}]
        }
    )
    url: str
    duration_s: float
    highlights: list[Highlight]


class _NoModel:
    """Chapters without a model: each chapter's summary falls back to its own notes."""

    model_id = "none"

    def generate_text(self, prompts: Sequence[str], **_: Any) -> list[Generation]:
        return [Generation(error="no model in the API") for _ in prompts]


def _jobs_of(res: Res, stream_id: str) -> list[dict[str, Any]]:
    ids = res.jobs.stream_job_ids(stream_id)
    out = []
    for job_id in ids:
        state = res.jobs.get(job_id)
        if state is not None:
            out.append(state.request.model_dump())
    return sorted(out, key=lambda r: r["submitted_at"])


async def _events(res: Res, stream_id: str) -> list[Event]:
    ids: list[bytes] = await res.redis.zrange(res.keys.events(stream_id), 0, _MAX_EVENTS - 1)  # type: ignore[assignment]
    raws = await res.redis.mget([res.keys.event(stream_id, i.decode()) for i in ids]) if ids else []
    return [Event.model_validate_json(r) for r in raws if r]


def _stream_sport(res: Res, stream_id: str) -> str | None:
    """The sport of the stream's latest sports-preset job; None when it has none (or its jobs expired)."""
    sports = [j for j in _jobs_of(res, stream_id) if j.get("preset") == "sports"]
    return (sports[-1]["sport"] or DEFAULT_SPORT) if sports else None


def _sport(res: Res, stream_id: str, given: str | None) -> str | None:
    sport = given or _stream_sport(res, stream_id)
    if sport is not None and sport not in SPORT_EVENTS:
        raise Problem(422, "Unknown sport", f"sport must be one of {', '.join(SPORT_EVENTS)}")
    return sport


@router.get(
    "/events/{event_id}/thumbnail.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No thumbnail"}},
)
async def thumbnail(event_id: str, res: Res, caller: Caller) -> Response:
    raw = await load_event(res, event_id)
    if raw is None:
        raise Problem(404, "Unknown event", f"no event {event_id!r}")
    stream_id = json.loads(raw)["stream_id"]
    require_stream(caller, stream_id)
    jpeg = await res.redis.get(res.keys.thumbnail(stream_id, event_id))
    if jpeg is None:
        raise Problem(404, "No thumbnail", "this event has no key frame stored (or it expired)")
    return Response(jpeg, media_type="image/jpeg")


@router.get("/streams/{stream_id}/highlights", response_model=Highlights)
async def highlights(
    stream_id: StreamId,
    res: Res,
    caller: Caller,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    sport: str | None = None,
) -> Highlights:
    """Events ranked by the sport's table; none for a stream not ingested with the sports preset, unless
    ``sport`` names a table (guessing one would rank e.g. camera alerts as soccer moments)."""
    require_stream(caller, stream_id)
    chosen = _sport(res, stream_id, sport)
    if chosen is None:
        return Highlights(sport=None, items=[])
    return Highlights(sport=chosen, items=rank(await _events(res, stream_id), SPORT_EVENTS[chosen], k=k))


def _reel_path(res: Res, stream_id: str) -> Path:
    return Path(res.settings.blobs.root).resolve() / "reels" / f"{stream_id}.mp4"


@router.post(
    "/streams/{stream_id}/reel",
    response_model=Reel,
    status_code=201,
    responses={
        409: {"description": "No file source to cut from, no sport to rank by, or no events yet"},
        **JSON_BODY_ERRORS,
    },
)
async def make_reel(stream_id: StreamId, body: ReelRequest, res: Res, caller: Caller) -> Reel:
    require_stream(caller, stream_id)
    files = [j["source"] for j in _jobs_of(res, stream_id) if Path(j["source"]).is_file()]
    if not files:
        raise Problem(
            409, "No file to cut", "a reel is cut from the stream's original file; this stream has none"
        )
    chosen = _sport(res, stream_id, body.sport)
    if chosen is None:
        raise Problem(
            409,
            "Not a sports stream",
            f"this stream was not ingested with the sports preset; give 'sport' ({', '.join(SPORT_EVENTS)})",
        )
    top = rank(await _events(res, stream_id), SPORT_EVENTS[chosen], k=body.k)
    if not top:
        raise Problem(409, "No highlights yet", "no events have been detected on this stream yet")
    duration = await asyncio.to_thread(export_reel, files[-1], top, _reel_path(res, stream_id))
    return Reel(url=f"/v1/streams/{stream_id}/reel.mp4", duration_s=round(duration, 3), highlights=top)


@router.get(
    "/streams/{stream_id}/reel.mp4",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}, 404: {"description": "No reel yet"}},
)
async def get_reel(stream_id: StreamId, res: Res, caller: Caller) -> FileResponse:
    require_stream(caller, stream_id)
    path = _reel_path(res, stream_id)
    if not path.is_file():
        raise Problem(404, "No reel", f"POST /v1/streams/{stream_id}/reel first")
    return FileResponse(path, media_type="video/mp4", filename=f"{stream_id}-highlights.mp4")


async def _summary(res: Res, stream_id: str) -> LectureSummary:
    raw = await res.redis.get(res.keys.summary(stream_id))
    if raw is not None:
        return LectureSummary.model_validate_json(raw)
    from vstream.store import load_segments

    segments = await asyncio.to_thread(load_segments, res.redis_sync, res.keys, stream_id)
    if not segments:
        raise Problem(404, "No summary yet", "no segments have been analysed on this stream yet")
    return summarize(stream_id, segments, _NoModel(), partial=True)  # type: ignore[arg-type]


@router.get("/streams/{stream_id}/summary", response_model=LectureSummary)
async def summary(stream_id: StreamId, res: Res, caller: Caller) -> LectureSummary:
    """Chapters, key points and the whole-lecture summary (``partial`` while analysis goes on)."""
    require_stream(caller, stream_id)
    return await _summary(res, stream_id)


@router.get(
    "/streams/{stream_id}/summary.md",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}}},
)
async def summary_markdown(stream_id: StreamId, res: Res, caller: Caller) -> Response:
    require_stream(caller, stream_id)
    return Response(to_markdown(await _summary(res, stream_id)), media_type="text/markdown; charset=utf-8")
