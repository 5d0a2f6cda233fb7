"""API keys: stored only as SHA-256 hashes, each allowed a set of stream-id patterns (fnmatch)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from vstream.names import Keys


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


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
        self.r, self.keys = client, keys

    async def create(self, name: str, streams: list[str]) -> tuple[str, str]:
        """Returns (key id, plaintext key); the plaintext is never stored."""
        key = "vs_" + secrets.token_urlsafe(32)
        digest = hash_key(key)
        record = {"name": name, "streams": json.dumps(streams), "created_at": str(time.time())}
        await self.r.hset(self.keys.api_key(digest), mapping=record)  # type: ignore[misc]
        await self.r.sadd(self.keys.api_keys, digest)  # type: ignore[misc]
        return digest[:16], key

    async def lookup(self, key: str) -> Principal | None:
        raw = await self.r.hgetall(self.keys.api_key(hash_key(key)))  # type: ignore[misc]
        if not raw:
            return None
        return Principal(name=raw[b"name"].decode(), streams=tuple(json.loads(raw[b"streams"])))

    async def list(self) -> list[dict[str, object]]:
        out = []
        for digest in await self.r.smembers(self.keys.api_keys):  # type: ignore[misc]
            raw = await self.r.hgetall(self.keys.api_key(digest.decode()))  # type: ignore[misc]
            if raw:
                out.append(
                    {
                        "id": digest.decode()[:16],
                        "name": raw[b"name"].decode(),
                        "streams": json.loads(raw[b"streams"]),
                        "created_at": float(raw[b"created_at"]),
                    }
                )
        return sorted(out, key=lambda k: k["created_at"])  # type: ignore[arg-type, return-value]

    async def delete(self, key_id: str) -> bool:
        for digest in await self.r.smembers(self.keys.api_keys):  # type: ignore[misc]
            if digest.decode().startswith(key_id) and len(key_id) >= 8:
                await self.r.delete(self.keys.api_key(digest.decode()))
                await self.r.srem(self.keys.api_keys, digest)  # type: ignore[misc]
                return True
        return False
