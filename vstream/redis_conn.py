"""The one place Redis clients are made: a plain client, or redis-py's cluster client when
``VSTREAM_REDIS__CLUSTER=true``.

Both speak the same commands. On a cluster every Lua script and MULTI/EXEC must touch keys of one hash
slot: ``vstream.names.Keys`` gives every key of one stream the hash tag ``{stream id}`` (and per-job and
per-webhook keys their own tag), and code that spans streams never puts those keys in one atomic block.
redis-py also refuses Lua scripts inside a cluster pipeline, so scripts are called one by one.

The annotations say ``redis.Redis`` / ``redis.asyncio.Redis`` for both kinds: the cluster clients are not
subclasses but offer the same command methods, and the code only uses those.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from vstream.config import RedisSettings

logger = logging.getLogger(__name__)


def connect(settings: RedisSettings, **kwargs: Any) -> redis.Redis:
    """A synchronous client for ``settings`` (extra ``kwargs`` go to redis-py, e.g. timeouts)."""
    if settings.cluster:
        return cast(redis.Redis, RedisCluster.from_url(settings.url, **kwargs))
    return redis.Redis.from_url(settings.url, **kwargs)


def connect_async(settings: RedisSettings, **kwargs: Any) -> aioredis.Redis:
    """The asyncio twin of :func:`connect` (the API and the webhook dispatcher)."""
    if settings.cluster:
        return cast(aioredis.Redis, AsyncRedisCluster.from_url(settings.url, **kwargs))
    return aioredis.Redis.from_url(settings.url, **kwargs)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)


def scan_keys(client: redis.Redis, pattern: str, count: int = 1000) -> Iterator[bytes]:
    """Every key matching ``pattern``; on a cluster redis-py's SCAN visits every primary."""
    yield from client.scan_iter(match=pattern, count=count)


def delete_matching(client: redis.Redis, pattern: str) -> int:
    """Delete every key matching ``pattern`` (cleanup of a key prefix); one slot at a time on a cluster,
    where a multi-key DEL must not cross slots."""
    removed, batch = 0, []
    for key in scan_keys(client, pattern):
        batch.append(key)
        if len(batch) >= 500:
            removed += _delete(client, batch)
            batch = []
    return removed + (_delete(client, batch) if batch else 0)


def _delete(client: redis.Redis, keys: list[bytes]) -> int:
    pipe = client.pipeline(transaction=False)  # a cluster pipeline sends each DEL to its key's node
    for key in keys:
        pipe.delete(key)
    return sum(int(n) for n in pipe.execute())
