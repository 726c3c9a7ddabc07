"""How many uploads one user may have in progress at once.

Uploads streamed through the API (videos and transcripts) each hold an *upload slot*
for as long as their body is read and stored; a user has ``limit`` slots. Slots live
in Redis when it is configured, so every API process counts against one budget, and
in process memory otherwise. Direct uploads do not pass bytes through the API: for
them the pending sessions in the database are counted instead.

Redis slots are a semaphore with leases: a sorted set per user whose members are
random tokens scored by the time their lease ends. Taking a slot is one Lua script
(drop lapsed leases, count, add), so processes never race; an upload renews its lease
while it runs, and a process that dies without releasing its slots loses them when
their leases lapse, within ``lease_seconds``. A Redis outage never blocks uploads:
the slot is then granted without being counted, and the outage is logged.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Protocol

import redis.asyncio as aioredis
from fastapi import Depends, Request
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vidlib.auth.models import User
from vidlib.db.base import utcnow
from vidlib.errors import TooManyRequests
from vidlib.uploads.models import Upload, UploadMethod, UploadStatus
from vidlib.uploads.streaming import run_shielded

log = logging.getLogger("vidlib.uploads")

# Retry-After hints: a streamed upload may end any second; a direct session ends when
# the client completes or cancels it.
SLOT_RETRY_AFTER_SECONDS = 5
SESSION_RETRY_AFTER_SECONDS = 60

# KEYS[1]: the user's set. ARGV: limit, lease (ms), token. 1 when the slot is taken.
# Scores use the Redis server's clock, so API hosts with skewed clocks agree.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS[1]: the user's set. ARGV: lease (ms), token. 0 when the lease had already lapsed.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) <= now then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
# KEYS[1]: the user's set. The number of leases still running.
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


def uploads_in_progress(limit: int) -> TooManyRequests:
    """429 for a user who already uses every upload slot."""
    held = "1 upload" if limit == 1 else f"{limit} uploads"
    which = "it" if limit == 1 else "one"
    return TooManyRequests(
        f"You already have {held} in progress; wait for {which} to finish.",
        retry_after=SLOT_RETRY_AFTER_SECONDS,
    )


class UploadSlots(Protocol):
    """At most ``limit`` uploads in progress per user."""

    limit: int

    def hold(self, user_id: uuid.UUID) -> AbstractAsyncContextManager[None]:
        """Take one of the user's slots for the ``async with`` block, or raise 429.

        The slot is released however the block ends: success, error or cancellation.
        """
        ...

    async def in_use(self, user_id: uuid.UUID) -> int:
        """How many of the user's slots are taken."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryUploadSlots:
    """Slots counted in this process (the embedded default: one process)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[uuid.UUID, int] = {}

    @asynccontextmanager
    async def hold(self, user_id: uuid.UUID) -> AsyncIterator[None]:
        """Take a slot for the block (no await between the check and the count)."""
        held = self._held.get(user_id, 0)
        if held >= self.limit:
            raise uploads_in_progress(self.limit)
        self._held[user_id] = held + 1
        try:
            yield
        finally:
            left = self._held[user_id] - 1
            if left:
                self._held[user_id] = left
            else:
                del self._held[user_id]

    async def in_use(self, user_id: uuid.UUID) -> int:
        """Slots the user holds."""
        return self._held.get(user_id, 0)

    async def close(self) -> None:
        """Nothing to release."""


class RedisUploadSlots:
    """Slots shared by every API process through Redis, as leases an upload renews."""

    def __init__(
        self,
        url: str,
        limit: int,
        *,
        lease_seconds: float = 120.0,
        renew_every_seconds: float | None = None,
        prefix: str = "vidlib:uploads:",
    ) -> None:
        self.limit = limit
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self._lease_ms = max(1, round(lease_seconds * 1000))
        # Several renewals per lease: a renewal or two may fail without losing the slot.
        self._renew_every = renew_every_seconds or lease_seconds / 4
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._count = self._redis.register_script(_COUNT)

    def key(self, user_id: uuid.UUID) -> str:
        """The sorted set of the user's leases."""
        return f"{self._prefix}{user_id}"

    @asynccontextmanager
    async def hold(self, user_id: uuid.UUID) -> AsyncIterator[None]:
        """Take a slot for the block, renewing its lease until the block ends."""
        key = self.key(user_id)
        token = secrets.token_hex(16)
        try:
            granted: bool | None = bool(
                await self._acquire(keys=[key], args=[self.limit, self._lease_ms, token])
            )
        except (RedisError, OSError) as exc:  # never block uploads on the counter
            log.warning("upload slots unavailable, upload not counted: %s", type(exc).__name__)
            granted = None
        if granted is None:
            yield
            return
        if not granted:
            raise uploads_in_progress(self.limit)
        renewer = asyncio.ensure_future(self._keep(key, token))
        try:
            yield
        finally:
            renewer.cancel()
            # Shielded: a cancelled request still gives its slot back.
            await run_shielded(lambda: self._release(renewer, key, token), f"release {key}")

    async def _keep(self, key: str, token: str) -> None:
        """Renew the lease until cancelled."""
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                renewed = await self._renew(keys=[key], args=[self._lease_ms, token])
            except (RedisError, OSError) as exc:
                log.warning("could not renew an upload slot: %s", type(exc).__name__)
                continue
            if not renewed:
                log.warning("an upload slot lapsed before its upload ended: %s", key)
                return

    async def _release(self, renewer: asyncio.Future[None], key: str, token: str) -> None:
        # The renewal must not put the token back after it is removed.
        await asyncio.wait({renewer})
        await self._redis.zrem(key, token)

    async def in_use(self, user_id: uuid.UUID) -> int:
        """Leases of the user still running."""
        return int(await self._count(keys=[self.key(user_id)]))

    async def close(self) -> None:
        """Close the pool."""
        await self._redis.aclose()


def create_upload_slots(limit: int, redis_url: str | None) -> UploadSlots:
    """Redis slots when a URL is configured, else in-process ones."""
    return RedisUploadSlots(redis_url, limit) if redis_url else MemoryUploadSlots(limit)


async def get_upload_slots(request: Request) -> UploadSlots:
    """The app's upload slots."""
    slots: UploadSlots = request.app.state.upload_slots
    return slots


UploadSlotsDep = Annotated[UploadSlots, Depends(get_upload_slots)]


# -- direct upload sessions ----------------------------------------------------------


async def pending_direct_sessions(
    session: AsyncSession, user_id: uuid.UUID, *, now: datetime, lifetime: timedelta, limit: int
) -> int:
    """The user's direct sessions still open at ``now``, counted up to ``limit``.

    A session still open was created within one ``lifetime``: that bound keeps the
    count on the ``(user_id, created_at)`` index however many uploads the user made.
    """
    open_sessions = (
        select(Upload.id)
        .where(
            Upload.user_id == user_id,
            Upload.created_at >= utcnow() - lifetime,
            Upload.status == UploadStatus.pending.value,
            Upload.method != UploadMethod.stream.value,
            Upload.expires_at > now,
        )
        .limit(limit)
        .subquery()
    )
    counted = await session.execute(select(func.count()).select_from(open_sessions))
    return int(counted.scalar_one())


async def lock_direct_sessions(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialise the opening of the user's direct sessions until the transaction ends.

    PostgreSQL: the user's row is locked (``FOR NO KEY UPDATE``, which leaves the
    foreign-key checks of other inserts alone). SQLite has one writer at a time: the
    insert that follows takes the write lock, and a count after it sees every
    committed session.
    """
    await session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


async def ensure_direct_session_room(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    now: datetime,
    lifetime: timedelta,
    limit: int,
    inserted: bool = False,
) -> None:
    """429 when the user already has ``limit`` direct sessions open.

    ``inserted``: the caller has already inserted (flushed) the new session in this
    transaction, after ``lock_direct_sessions``, so the count includes it; a refusal
    then rolls it back.
    """
    others = await pending_direct_sessions(
        session, user_id, now=now, lifetime=lifetime, limit=limit + 1
    ) - int(inserted)
    if others >= limit:
        held = "1 direct upload" if limit == 1 else f"{limit} direct uploads"
        raise TooManyRequests(
            f"You already have {held} in progress; complete or cancel one first.",
            retry_after=SESSION_RETRY_AFTER_SECONDS,
        )
