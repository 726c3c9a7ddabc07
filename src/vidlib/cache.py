"""A small key-value cache: Redis when configured, in-process otherwise.

Entries are looked up by keys that include the owner's ``library_version``, so a
write to a library makes its cached entries unreachable in every API process at
once; TTLs only reclaim space.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError


class Cache(Protocol):
    """Bytes by key with a time to live; failures degrade to a miss."""

    async def get(self, key: str) -> bytes | None:
        """The cached value, or None (also when the cache is down)."""
        ...

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        """Store a value; a down cache is ignored."""
        ...

    async def check(self) -> None:
        """Raise when the cache is unreachable (readiness)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """An LRU with per-entry expiry, for a single process, bounded in entries and bytes."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        """The cached value, or None."""
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        """Store a value, evicting the least recently used past either bound."""
        if len(value) > self._max_bytes:
            return
        self._drop(key)
        now = time.monotonic()
        self._data[key] = (now + ttl_seconds, value)
        self._bytes += len(value)
        while len(self._data) > self._max or self._bytes > self._max_bytes:
            _, (_, evicted) = self._data.popitem(last=False)
            self._bytes -= len(evicted)
        # Reclaim what has expired at the least recently used end: entries keyed by a
        # superseded library version are never read again, so nothing else would.
        for old, (expires, _) in list(itertools.islice(self._data.items(), 8)):
            if expires >= now:
                break
            self._drop(old)

    def _drop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self._bytes -= len(item[1])

    @property
    def size_bytes(self) -> int:
        """Bytes held in values."""
        return self._bytes

    async def check(self) -> None:
        """Always reachable."""

    async def close(self) -> None:
        """Nothing to release."""


class RedisCache:
    """Redis-backed cache shared by every API process."""

    def __init__(self, url: str, *, prefix: str = "vidlib:cache:") -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        """The cached value, or None when absent or Redis is down."""
        try:
            value = await self._redis.get(self._prefix + key)
        except (RedisError, OSError):
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        """Store a value; Redis being down only costs the cache."""
        try:
            await self._redis.set(self._prefix + key, value, ex=ttl_seconds)
        except (RedisError, OSError):
            return

    async def check(self) -> None:
        """PING."""
        await self._redis.ping()

    async def close(self) -> None:
        """Close the pool."""
        await self._redis.aclose()


def create_cache(redis_url: str | None) -> Cache:
    """Redis when a URL is configured, else an in-process cache."""
    return RedisCache(redis_url) if redis_url else MemoryCache()
