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
CACHE_S = 5.0  # a revoked key keeps working for at most this long on an API process


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
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def create(self, name: str, streams: list[str]) -> tuple[str, str]:
        """Returns (key id, plaintext key); the plaintext is never stored."""
        key = "vs_" + secrets.token_urlsafe(32)
        digest = hash_key(key)
        record = {"name": name, "streams": json.dumps(streams), "created_at": str(time.time())}
        await self.r.hset(self.keys.api_key(digest), mapping=record)
        await self.r.sadd(self.keys.api_keys, digest)
        return digest[:KEY_ID_LENGTH], key

    async def lookup(self, key: str) -> Principal | None:
        """Known keys are cached for CACHE_S (one Redis round trip less per request); unknown ones never."""
        digest = hash_key(key)
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        raw = await self.r.hgetall(self.keys.api_key(digest))
        if not raw:
            self._cache.pop(digest, None)
            return None
        found = Principal(name=_s(raw[b"name"]), streams=tuple(json.loads(raw[b"streams"])))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + CACHE_S, found)
        return found

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
                self._cache.pop(_s(digest), None)  # this process forgets it at once; others within CACHE_S
                await self.r.srem(self.keys.api_keys, digest)
                return True
        return False
