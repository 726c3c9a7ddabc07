"""What the task functions run with, and the helpers they share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vidlib.config import Settings
from vidlib.db.base import utcnow
from vidlib.storage.base import ObjectStore
from vidlib.tasks.config import BackgroundConfig
from vidlib.tasks.media import MediaRunner

log = logging.getLogger("vidlib.tasks")
T = TypeVar("T")

Kick = Callable[[uuid.UUID], Awaitable[None]]


class LeaseLost(Exception):
    """Another attempt took the row over, or the job was cancelled: stop, write nothing."""


class Later:
    """Delayed kicks of this process (retries, waits); lost on exit, which the sweeper
    makes good once the rows are due."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, delay: timedelta, kick: Kick, row_id: uuid.UUID) -> None:
        """Run ``kick(row_id)`` after ``delay``."""

        async def run() -> None:
            await asyncio.sleep(max(0.0, delay.total_seconds()))
            try:
                await kick(row_id)
            except Exception:
                log.warning("could not requeue %s; the sweeper will", row_id, exc_info=True)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Drop the pending kicks."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class TaskContext:
    """The resources every task uses, shared by the tasks of one process."""

    settings: Settings
    config: BackgroundConfig
    sessionmaker: async_sessionmaker[AsyncSession]
    store: ObjectStore
    media: MediaRunner
    kick_ingest: Kick
    kick_job: Kick
    later: Later = field(default_factory=Later)

    def lease_until(self, now: datetime | None = None) -> datetime:
        """When a claim taken or renewed now expires."""
        return (now or utcnow()) + self.config.lease

    @property
    def renew_every(self) -> float:
        """Seconds between lease renewals: a third of the lease, so two may fail."""
        return max(0.05, self.config.lease.total_seconds() / 3)


async def with_lease(
    work: Coroutine[Any, Any, T], renew: Callable[[], Awaitable[bool]], every: float
) -> T:
    """Await ``work`` while renewing its claim; ``LeaseLost`` (work cancelled) once a
    renewal finds the claim gone."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            try:
                held = await renew()
            except Exception:
                # A database hiccup: keep going; if the lease lapses meanwhile the
                # fenced writes at the end find out.
                log.warning("could not renew a lease", exc_info=True)
                continue
            if not held:
                raise LeaseLost()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
