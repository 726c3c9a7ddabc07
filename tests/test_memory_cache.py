"""The in-process cache: expiry, and bounds in entries and in bytes."""

from __future__ import annotations

import time

import pytest

from vidlib.cache import MemoryCache


async def test_values_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MemoryCache()
    await cache.set("k", b"v", ttl_seconds=10)
    assert await cache.get("k") == b"v"
    later = time.monotonic() + 11
    monkeypatch.setattr("vidlib.cache.time.monotonic", lambda: later)
    assert await cache.get("k") is None
    assert cache.size_bytes == 0


async def test_least_recently_used_goes_first_past_the_entry_bound() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    assert await cache.get("a") == b"1"  # "b" is now the least recently used
    await cache.set("c", b"3", 60)
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1"
    assert await cache.get("c") == b"3"


async def test_bytes_are_bounded() -> None:
    cache = MemoryCache(max_bytes=100)
    for i in range(10):
        await cache.set(f"k{i}", bytes(30), 60)
        assert cache.size_bytes <= 100
    assert cache.size_bytes == 90
    assert await cache.get("k9") is not None
    assert await cache.get("k0") is None
    # Replacing a value counts only the new one; a value over the bound is not kept.
    await cache.set("k9", bytes(10), 60)
    assert cache.size_bytes == 70
    await cache.set("huge", bytes(101), 60)
    assert await cache.get("huge") is None
    assert cache.size_bytes == 70


async def test_expired_entries_are_reclaimed_without_being_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = MemoryCache()
    for i in range(5):
        await cache.set(f"old{i}", bytes(10), ttl_seconds=10)
    later = time.monotonic() + 11
    monkeypatch.setattr("vidlib.cache.time.monotonic", lambda: later)
    await cache.set("new", bytes(10), ttl_seconds=10)
    assert cache.size_bytes == 10
