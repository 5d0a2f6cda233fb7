"""``POST /v1/streams/{id}/ask``: a question answered from the stream's stored captions, segments and events
(``vstream.ask``), by the backend the model settings name (the same ``VSTREAM_MODEL__*`` as the worker)."""

from __future__ import annotations

import asyncio
import logging
import threading

from fastapi import APIRouter, FastAPI, Request

from api.deps import Caller, Res, require_stream
from api.problems import Problem
from api.schemas.ask import ASK_ERRORS, ASK_EXAMPLE, AskAnswer, AskRequest
from api.schemas.results import StreamId
from vstream.ask import AskFailed, answer_question
from vstream.config import ModelSettings
from vstream.model.base import BackendError, BackendUnavailable, ModelBackend

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["questions"])
_lock = threading.Lock()


def _backend(app: FastAPI, settings: ModelSettings) -> ModelBackend:
    """Made on the first question, not at start-up: an API that is never asked loads no model."""
    with _lock:
        backend: ModelBackend | None = getattr(app.state, "ask_backend", None)
        if backend is None:
            from vstream.model.factory import make_backend

            backend = make_backend(settings)
            app.state.ask_backend = backend
        return backend


@router.post(
    "/streams/{stream_id}/ask",
    response_model=AskAnswer,
    responses={200: {"content": {"application/json": {"example": ASK_EXAMPLE}}}, **ASK_ERRORS},
    summary="Ask a question about a stream",
)
async def ask(stream_id: StreamId, body: AskRequest, request: Request, res: Res, caller: Caller) -> AskAnswer:
    """GLM-4.5V answers from the records stored for the range (map-reduce over long ranges); every
    citation is a stored record. A range with nothing stored is answered without the model."""
    require_stream(caller, stream_id)
    settings = res.settings
    thinking = settings.model.thinking if body.thinking is None else body.thinking

    def run() -> AskAnswer:
        return answer_question(
            res.redis_sync,
            res.keys,
            stream_id,
            body.question.strip(),
            lambda: _backend(request.app, settings.model),
            settings.ask,
            start=body.start,
            end=body.end,
            thinking=thinking,
        )

    try:
        return await asyncio.to_thread(run)  # the model and the sync Redis client block
    except BackendUnavailable as exc:
        raise Problem(503, "Model unavailable", f"model server unavailable: {exc}") from exc
    except (AskFailed, BackendError) as exc:
        raise Problem(502, "No answer", str(exc)) from exc
