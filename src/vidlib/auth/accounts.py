"""Callers' account snapshots kept in memory, dropped the moment their row changes.

Every authenticated request needs its caller's row (to know the user still exists,
and the library version that cache keys are built from). Reading it from the
database costs a round trip per request; this keeps it in the API process instead,
and stays exact because PostgreSQL tells the process about every change:

* a trigger on ``users`` sends ``NOTIFY vidlib_user_changed, '<user id>'`` for every
  update or delete (``'*'`` for a truncate), from any writer (API, workers, CLI,
  manual SQL), at commit;
* :class:`AccountChanges` holds one connection that LISTENs on that channel and drops
  the announced snapshot;
* a session of the app's sessionmaker (a request, an upload, an in-process task) that
  changed a user's library drops the snapshot itself right after its commit, before
  the response leaves, so the caller's next request through the same process reads
  its own write without waiting for the notification;
* a snapshot loaded while a change was being announced is not stored (generation
  check), so a stale row can never be put back after its notification;
* the listener sends itself a notification every few seconds; while it is down, being
  re-established, or notifications do not come back (a transaction-pooling proxy),
  the cache is off and empty: every request reads the database, as without it;
* snapshots also expire after a minute, whatever happens.

Across API processes a change is visible once the notification arrives, normally
well under a millisecond after the commit. SQLite (single process, other processes
such as the CLI write without notifying) never turns the cache on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from vidlib.auth.models import Account

log = logging.getLogger("vidlib.auth.accounts")

# Keep in step with migration 0004.
CHANNEL = "vidlib_user_changed"
# Heartbeats: "ping:<random>", sent by each listener to itself (others ignore them).
PING_PREFIX = "ping:"
# How the listening connection shows in pg_stat_activity.
APPLICATION_NAME = "vidlib-account-changes"


class AccountCache:
    """A bounded LRU of account snapshots by user id; off until a listener turns it on."""

    def __init__(self, *, max_entries: int = 50_000, ttl_seconds: float = 60.0) -> None:
        self._data: OrderedDict[uuid.UUID, tuple[float, Account]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds
        # Bumped by every invalidation: a load that spans one is not stored.
        self._generation = 0
        self._enabled = False

    @property
    def enabled(self) -> bool:
        """Whether snapshots are served (only while changes are being heard)."""
        return self._enabled

    @property
    def generation(self) -> int:
        """Read before loading a snapshot; pass to :meth:`put`."""
        return self._generation

    def get(self, user_id: uuid.UUID) -> Account | None:
        """The snapshot, or None when absent, expired or the cache is off."""
        if not self._enabled:
            return None
        item = self._data.get(user_id)
        if item is None:
            return None
        if item[0] < time.monotonic():
            self._data.pop(user_id, None)
            return None
        self._data.move_to_end(user_id)
        return item[1]

    def put(self, account: Account, generation: int) -> None:
        """Keep a snapshot read from the database, unless anything changed since
        ``generation`` was read (the row may already be stale) or the cache is off."""
        if not self._enabled or generation != self._generation:
            return
        self._data[account.id] = (time.monotonic() + self._ttl, account)
        self._data.move_to_end(account.id)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def invalidate(self, user_id: uuid.UUID) -> None:
        """Drop one user's snapshot (its row changed)."""
        self._generation += 1
        self._data.pop(user_id, None)

    def enable(self) -> None:
        """Start serving snapshots (changes are being heard from now on)."""
        self.clear()
        self._enabled = True

    def disable(self) -> None:
        """Stop serving snapshots and forget them (changes may go unheard)."""
        self._enabled = False
        self.clear()

    def clear(self) -> None:
        """Forget every snapshot."""
        self._generation += 1
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class AccountChanges:
    """Listens for user-row changes on PostgreSQL and keeps :class:`AccountCache` exact.

    One connection of its own (not from the request pool). Every ``heartbeat_seconds``
    it sends itself a notification and waits for it: when that fails or the connection
    closes, the cache is turned off at once and the connection is re-opened with
    back-off; the cache comes back on, empty, once a notification makes the round trip
    again.
    """

    def __init__(
        self,
        database_url: str,
        cache: AccountCache,
        *,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self._engine = create_async_engine(
            database_url,
            poolclass=NullPool,
            connect_args={"server_settings": {"application_name": APPLICATION_NAME}},
        )
        self._cache = cache
        self._heartbeat = heartbeat_seconds
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._ping = ""
        self._pong = asyncio.Event()

    async def start(self) -> None:
        """Begin listening in the background; returns once listening, or after one
        heartbeat's round trip at most (the cache stays off until it listens)."""
        self._task = asyncio.create_task(self._run(), name="vidlib-account-changes")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=min(5, 2 * self._heartbeat))

    async def aclose(self) -> None:
        """Stop listening and turn the cache off."""
        self._cache.disable()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._engine.dispose()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(PING_PREFIX):
            if payload == self._ping:
                self._pong.set()
            return
        try:
            user_id = uuid.UUID(payload)
        except ValueError:  # "*": the table was truncated
            self._cache.clear()
            return
        self._cache.invalidate(user_id)

    def _lost(self, _conn: object) -> None:
        self._cache.disable()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self._engine.connect() as conn:
                    await self._listen(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("account change listener down (%s); retrying in %.1f s", exc, delay)
            self._cache.disable()
            if self._listening.is_set():
                delay = 0.5
                self._listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _listen(self, conn: AsyncConnection) -> None:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        raw.add_termination_listener(self._lost)
        await raw.add_listener(CHANNEL, self._notified)
        # Turn the cache on only once a notification has made the round trip (a
        # proxy that pools by transaction, for one, accepts LISTEN but delivers nothing).
        await self._round_trip(raw)
        self._cache.enable()
        self._listening.set()
        log.info("listening for account changes")
        try:
            while True:
                await asyncio.sleep(self._heartbeat)
                await self._round_trip(raw)
        finally:
            self._cache.disable()

    async def _round_trip(self, raw: Any) -> None:
        """Send a notification to this channel and wait for it to come back."""
        self._ping = f"{PING_PREFIX}{uuid.uuid4().hex}"
        self._pong.clear()
        await raw.execute(f"NOTIFY {CHANNEL}, '{self._ping}'", timeout=self._heartbeat)
        try:
            await asyncio.wait_for(self._pong.wait(), timeout=self._heartbeat)
        except TimeoutError:
            raise ConnectionError("a notification did not come back") from None
