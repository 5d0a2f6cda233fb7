"""API-key management schemas, and the problem-details body every error response documents."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

StreamPattern = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    Field(description="An fnmatch pattern of stream ids, e.g. 'cam-*' or 'lobby'."),
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
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    403: problem_doc(403, "The key is not the admin key", "Admin only", "this endpoint needs the admin key"),
}


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="Who or what the key is for.")
    streams: list[StreamPattern] = Field(
        min_length=1, max_length=100, description="Stream-id patterns (fnmatch) this key may access."
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
