"""Review-console schemas: the short-lived video token a page fetches to play a stream's original file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MediaToken(BaseModel):
    """A URL a ``<video>`` element can load without an API key (it cannot send headers)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "/v1/media/6dQm1rV0c2xPq8m3yJtY1w7Kx0bN5sE2aL9fHcUuZ4o",
                    "expires_at": 1767226500.0,
                    "stream_id": "match-42",
                    "name": "match.mp4",
                }
            ]
        }
    )
    url: str = Field(description="Same-origin URL of the video; supports HTTP Range requests.")
    expires_at: float = Field(description="Unix seconds after which the URL stops working (ask for another).")
    stream_id: str
    name: str = Field(description="The file's name (not its path on the server).")


class MediaGrant(BaseModel):
    """What a token grants, stored in Redis under the token's hash with the token's TTL."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    stream_id: str
    path: str
    principal: str = Field(description="Name of the key that asked for it, for the log.")
