"""API keys: stored only as SHA-256 hashes, each allowed a set of stream-id patterns (fnmatch)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from vstream.names import Keys

KEY_ID_LENGTH = 16


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a named key with stream patterns, or the admin."""

    name: str
    streams: tuple[str, ...]
    admin: bool = False

    def may_see(self, stream_id: str) -> bool:
        return self.admin or any(fnmatch.fnmatchcase(stream_id, p) for p in self.streams)


class KeyStore:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.r: Any = client  # redis-py's async stubs type every reply as a union; the values are bytes
        self.keys = keys

    async def create(self, name: str, streams: list[str]) -> tuple[str, str]:
        """Returns (key id, plaintext key); the plaintext is never stored."""
        key = "vs_" + secrets.token_urlsafe(32)
        digest = hash_key(key)
        record = {"name": name, "streams": json.dumps(streams), "created_at": str(time.time())}
        await self.r.hset(self.keys.api_key(digest), mapping=record)
        await self.r.sadd(self.keys.api_keys, digest)
        return digest[:KEY_ID_LENGTH], key

    async def lookup(self, key: str) -> Principal | None:
        raw = await self.r.hgetall(self.keys.api_key(hash_key(key)))
        if not raw:
            return None
        return Principal(name=_s(raw[b"name"]), streams=tuple(json.loads(raw[b"streams"])))

    async def list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for digest in await self.r.smembers(self.keys.api_keys):
            raw = await self.r.hgetall(self.keys.api_key(_s(digest)))
            if raw:
                out.append(
                    {
                        "id": _s(digest)[:KEY_ID_LENGTH],
                        "name": _s(raw[b"name"]),
                        "streams": json.loads(raw[b"streams"]),
                        "created_at": float(raw[b"created_at"]),
                    }
                )
        return sorted(out, key=lambda k: float(k["created_at"]))

    async def delete(self, key_id: str) -> bool:
        """Revoke by the exact 16-character id shown at creation (a shorter prefix could hit another key)."""
        if len(key_id) != KEY_ID_LENGTH:
            return False
        for digest in await self.r.smembers(self.keys.api_keys):
            if _s(digest)[:KEY_ID_LENGTH] == key_id:
                await self.r.delete(self.keys.api_key(_s(digest)))
                await self.r.srem(self.keys.api_keys, digest)
                return True
        return False
