"""API-key management (admin key only): create, list, revoke. Keys are stored only as hashes."""

from __future__ import annotations

import logging
import re
from typing import Annotated

from fastapi import APIRouter, Body, Path, Response

from api.deps import Caller, Res, require_admin
from api.problems import Problem
from api.schemas.keys import (
    ADMIN_ERRORS,
    JSON_BODY_ERRORS,
    KeyCreate,
    KeyCreated,
    KeyInfo,
    KeyList,
    problem_doc,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/keys", tags=["keys"])
_KEY_ID = re.compile(r"[0-9a-f]{16}")


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    responses={
        **ADMIN_ERRORS,
        **JSON_BODY_ERRORS,
        422: problem_doc(
            422,
            "A missing or invalid field",
            "Invalid request",
            "streams: List should have at least 1 item after validation, not 0",
        ),
    },
    summary="Create an API key limited to some streams",
)
async def create_key(
    body: Annotated[
        KeyCreate,
        Body(openapi_examples={"dashboard": {"value": {"name": "lobby dashboard", "streams": ["lobby"]}}}),
    ],
    res: Res,
    caller: Caller,
) -> KeyCreated:
    """The plaintext key is in this response only: store it now, it cannot be shown again."""
    require_admin(caller)
    streams = list(dict.fromkeys(body.streams))  # drop duplicates, keep order
    key_id, key = await res.key_store.create(body.name, streams)
    logger.info("api key %s (%s) created for streams %s", key_id, body.name, streams)
    return KeyCreated(id=key_id, key=key, name=body.name, streams=streams)


@router.get("", response_model=KeyList, responses=ADMIN_ERRORS, summary="List API keys (never the keys)")
async def list_keys(res: Res, caller: Caller) -> KeyList:
    require_admin(caller)
    return KeyList(items=[KeyInfo.model_validate(k) for k in await res.key_store.list()])


@router.delete(
    "/{key_id}",
    status_code=204,
    response_class=Response,
    responses={
        **ADMIN_ERRORS,
        404: problem_doc(404, "No key with this id", "No such key", "no API key has id '3f2a9c0d41be7e55'"),
    },
    summary="Revoke an API key",
)
async def delete_key(
    key_id: Annotated[str, Path(description="The key's id, as listed.", examples=["3f2a9c0d41be7e55"])],
    res: Res,
    caller: Caller,
) -> Response:
    """Requests with the key fail with 401 from now on."""
    require_admin(caller)
    # Exactly an id as listed: KeyStore.delete matches prefixes, so a short one could revoke another key.
    if not _KEY_ID.fullmatch(key_id) or not await res.key_store.delete(key_id):
        raise Problem(404, "No such key", f"no API key has id {key_id!r}; list the keys with GET /v1/keys")
    logger.info("api key %s revoked", key_id)
    return Response(status_code=204)
