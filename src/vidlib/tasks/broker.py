"""The taskiq broker: in memory (tasks run in this process) or a Redis stream.

The Redis stream broker acknowledges a message only after its task returned, and
redelivers messages left unacknowledged (a killed worker's) after
``redelivery_idle``; the tasks themselves are idempotent, so a redelivery, a
duplicate from the sweeper or a retry is harmless. (taskiq-redis looks for such
messages only after a read that returned new ones, so on a quiet stream it is the
sweeper that recovers a killed worker's task.)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker
from taskiq.kicker import AsyncKicker
from taskiq.result_backends.dummy import DummyResultBackend
from taskiq_redis import RedisStreamBroker

from vidlib.tasks.config import BackgroundConfig
from vidlib.tasks.context import TaskContext
from vidlib.tasks.jobs import run_job
from vidlib.tasks.videos import ingest_video

log = logging.getLogger("vidlib.tasks")

INGEST_TASK = "vidlib.ingest_video"
JOB_TASK = "vidlib.run_job"
CONSUMER_GROUP = "vidlib-workers"


def create_broker(config: BackgroundConfig) -> AsyncBroker:
    """The broker the configuration names (not started)."""
    if config.backend == "redis":
        assert config.redis_url is not None  # checked by BackgroundConfig
        return RedisStreamBroker(
            url=config.redis_url,
            queue_name=config.queue_name,
            consumer_group_name=CONSUMER_GROUP,
            # Start at the beginning of the stream: messages sent before the first
            # worker ever started are not skipped.
            consumer_id="0",
            idle_timeout=int(config.redelivery_idle.total_seconds() * 1000),
            # A worker killed while holding the redelivery lock must not hold it forever.
            unacknowledged_lock_timeout=30,
            xread_block=1000,
            xread_count=config.concurrency,
            # Acknowledged messages are trimmed away; the database keeps the state.
            maxlen=100_000,
        )
    # Tasks return nothing worth keeping: their outcome is in the database.
    return InMemoryBroker(propagate_exceptions=False).with_result_backend(DummyResultBackend())


class TaskQueue:
    """Puts rows' ids on the queue of one task: the ``IngestQueue`` and ``JobQueue``."""

    def __init__(self, broker: AsyncBroker, task_name: str) -> None:
        self.broker = broker
        self.task_name = task_name

    async def enqueue(self, row_id: uuid.UUID) -> None:
        """Queue the task for one committed row; a queue outage is logged, not raised.

        The row is committed and the database is the source of truth: the sweeper
        queues rows that were never picked up, so a lost message only delays the work.
        """
        kicker: AsyncKicker[[str], Coroutine[Any, Any, None]] = AsyncKicker(
            task_name=self.task_name, broker=self.broker, labels={}
        )
        try:
            await kicker.kiq(str(row_id))
        except Exception as exc:
            log.warning(
                "could not queue %s for %s (%s); the sweeper will",
                self.task_name,
                row_id,
                type(exc).__name__,
            )


Handler = Callable[[TaskContext, uuid.UUID], Awaitable[None]]


def register_tasks(broker: AsyncBroker, ctx: TaskContext, running: set[asyncio.Task[Any]]) -> None:
    """Bind the task functions to ``ctx`` on ``broker``; ``running`` tracks them.

    At most ``concurrency`` run at once in this process (the in-memory broker starts
    every task it is given at once; a task waiting here has claimed nothing yet).
    """
    slots = asyncio.Semaphore(ctx.config.concurrency)

    def bound(handler: Handler) -> Callable[[str], Awaitable[None]]:
        async def task(row_id: str) -> None:
            current = asyncio.current_task()
            if current is not None:
                running.add(current)
            try:
                async with slots:
                    await handler(ctx, uuid.UUID(row_id))
            finally:
                if current is not None:
                    running.discard(current)

        return task

    broker.register_task(bound(ingest_video), task_name=INGEST_TASK)
    broker.register_task(bound(run_job), task_name=JOB_TASK)
