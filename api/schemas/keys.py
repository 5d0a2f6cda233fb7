"""API-key management schemas, and the problem-details body every error response documents."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from vstream.schema import STREAM_ID_PATTERN

_STREAM_ID = re.compile(STREAM_ID_PATTERN)


def _could_match_a_stream(pattern: str) -> str:
    # With each '*' as one id character, a pattern fails the id rule only when it has a character no id
    # has, starts where no id can, or is longer than any id: it would match nothing, silently
    if not _STREAM_ID.fullmatch(pattern.replace("*", "a")):
        raise PydanticCustomError(  # not ValueError: its message would start "Value error, "
            "stream_pattern",
            "{pattern} matches no stream id: use what stream ids use (letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 128) and '*' for any run of them, e.g. 'cam-*'",
            {"pattern": repr(pattern)},
        )
    return pattern


StreamPattern = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_could_match_a_stream),
    Field(description="A stream id, or a pattern of them with '*' for any run of characters: 'cam-*'."),
]


class ProblemDetail(BaseModel):
    """RFC 9457 problem details: the body of every error."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[dict[str, str]] | None = Field(
        None, description="Per-field messages ({field, message}) of a 422."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Invalid request",
                    "status": 422,
                    "detail": "params.fps: Input should be greater than 0",
                    "errors": [{"field": "params.fps", "message": "Input should be greater than 0"}],
                }
            ]
        }
    )


def problem_doc(status: int, description: str, title: str, detail: str = "") -> dict[str, Any]:
    """An OpenAPI ``responses`` entry: a problem+json body with an example."""
    example = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": ProblemDetail.model_json_schema(), "example": example}
        },
    }


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc(
        401,
        "No API key, or an unknown or revoked one",
        "Unknown API key",
        "the key is not valid (revoked or mistyped)",
    ),
}
JSON_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    415: problem_doc(
        415,
        "The body was not sent as JSON (Content-Type missing or not application/json)",
        "Unsupported media type",
        "the body was sent with Content-Type 'application/x-www-form-urlencoded'; send JSON with the header "
        "'Content-Type: application/json'",
    ),
}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    403: problem_doc(403, "The key is not the admin key", "Admin only", "this endpoint needs the admin key"),
}


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="Who or what the key is for.")
    streams: list[StreamPattern] = Field(
        min_length=1, max_length=100, description="Stream ids, or patterns with '*', this key may access."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "lobby dashboard", "streams": ["lobby", "cam-*"]}]},
    )


class KeyInfo(BaseModel):
    id: str = Field(description="Key id (a prefix of the key's hash): use it to revoke the key.")
    name: str
    streams: list[str]
    created_at: float = Field(description="Unix seconds.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2a9c0d41be7e55",
                    "name": "lobby dashboard",
                    "streams": ["lobby", "cam-*"],
                    "created_at": 1767225600.0,
                }
            ]
        }
    )


class KeyCreated(BaseModel):
    id: str = Field(description="Key id (a prefix of the key's hash): use it to revoke the key.")
    key: str = Field(description="The key itself: shown only in this response, never stored.")
    name: str
    streams: list[str]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2a9c0d41be7e55",
                    "key": "vs_Jq4C0o1m5xQq8vU0y2fWb3jY7r1oG2kN9sZtH6aLdE4",
                    "name": "lobby dashboard",
                    "streams": ["lobby", "cam-*"],
                }
            ]
        }
    )


class KeyList(BaseModel):
    items: list[KeyInfo]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": "3f2a9c0d41be7e55",
                            "name": "lobby dashboard",
                            "streams": ["lobby"],
                            "created_at": 1767225600.0,
                        }
                    ]
                }
            ]
        }
    )
