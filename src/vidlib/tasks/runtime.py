"""Starting background work: inside the API (embedded default) or as ``vidlib worker``.

- ``start_background(settings, sessionmaker, store)``: called by the API's lifespan.
  With the in-memory queue (no Redis) the tasks, the sweeper and maintenance run in
  the API process, media analysis in a process pool. With Redis the API only
  enqueues; ``vidlib worker`` does the work.
- ``run_worker(settings)``: the ``vidlib worker`` process: the taskiq receiver on
  the Redis stream, plus the sweeper and maintenance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from taskiq import AsyncBroker
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

from vidlib.config import ConfigError, Settings
from vidlib.db.session import create_engine, create_sessionmaker
from vidlib.jobs.service import JobQueue
from vidlib.storage import open_store
from vidlib.storage.base import ObjectStore
from vidlib.tasks.broker import INGEST_TASK, JOB_TASK, TaskQueue, create_broker, register_tasks
from vidlib.tasks.config import BackgroundConfig
from vidlib.tasks.context import TaskContext
from vidlib.tasks.ingest import IngestQueue
from vidlib.tasks.media import MediaRunner
from vidlib.tasks.periodic import run_periodic

log = logging.getLogger("vidlib.tasks")

# How long shutting down waits for tasks in flight before cancelling them (their
# leases lapse and the sweeper hands them to the next process).
SHUTDOWN_GRACE_SECONDS = 10.0
RECONNECT_SECONDS = 2.0


def _media_runner(config: BackgroundConfig) -> MediaRunner:
    return MediaRunner(
        executor=config.media_executor,
        workers=config.media_workers,
        memory_limit_mb=config.media_memory_limit_mb,
        limits=config.media_limits,
    )


def _context(
    settings: Settings,
    config: BackgroundConfig,
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    broker: AsyncBroker,
) -> TaskContext:
    return TaskContext(
        settings=settings,
        config=config,
        sessionmaker=sessionmaker,
        store=store,
        media=_media_runner(config),
        kick_ingest=TaskQueue(broker, INGEST_TASK).enqueue,
        kick_job=TaskQueue(broker, JOB_TASK).enqueue,
    )


async def _drain(running: set[asyncio.Task[Any]], grace: float) -> None:
    """Let tasks in flight finish for ``grace`` seconds, then cancel the rest."""
    if running:
        await asyncio.wait(set(running), timeout=grace)
    for task in list(running):
        task.cancel()
    for task in list(running):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _warm_up(context: TaskContext) -> None:
    try:
        await context.media.warm_up()
    except Exception:
        log.warning("could not start the media analysis pool", exc_info=True)


async def _periodic_work(context: TaskContext) -> None:
    """Sweep and maintain; meanwhile start the media pool (without delaying either)."""
    warm = asyncio.create_task(_warm_up(context))
    try:
        await run_periodic(context)
    finally:
        warm.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warm


@dataclass
class Background:
    """The queues the API enqueues into, and the in-process work when there is no worker."""

    ingest: IngestQueue
    jobs: JobQueue
    config: BackgroundConfig
    broker: AsyncBroker
    context: TaskContext | None = None
    _periodic: asyncio.Task[None] | None = None
    _running: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def in_process(self) -> bool:
        """Whether tasks run in this process (the in-memory queue)."""
        return self.context is not None

    async def check(self) -> None:
        """Raise when the queue is unreachable (readiness)."""
        if isinstance(self.broker, RedisStreamBroker):
            async with Redis(connection_pool=self.broker.connection_pool) as client:
                await client.ping()

    async def aclose(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop periodic work, let tasks in flight finish briefly, release everything."""
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
        if self.context is not None:
            await _drain(self._running, grace)
            # Then the retries those tasks scheduled, and whatever those started.
            await self.context.later.aclose()
            await _drain(self._running, 0)
            await self.context.media.aclose()
        await self.broker.shutdown()


async def start_background(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    *,
    config: BackgroundConfig | None = None,
) -> Background:
    """Open the queue for the API; on the in-memory queue also start the work itself."""
    config = config or BackgroundConfig.from_settings(settings)
    broker = create_broker(config)
    background = Background(
        ingest=TaskQueue(broker, INGEST_TASK),
        jobs=TaskQueue(broker, JOB_TASK),
        config=config,
        broker=broker,
    )
    if config.backend == "memory":
        context = _context(settings, config, sessionmaker, store, broker)
        register_tasks(broker, context, background._running)
        background.context = context
        await broker.startup()
        background._periodic = asyncio.create_task(_periodic_work(context))
    else:
        try:
            await broker.startup()
        except Exception as exc:
            # The API stays up without its queue: uploads still commit, /readyz reports
            # the queue down, and the worker's sweeper queues the rows once it is back.
            log.warning("the task queue is unreachable (%s)", type(exc).__name__)
    return background


@contextlib.asynccontextmanager
async def open_ingest_queue(settings: Settings) -> AsyncIterator[IngestQueue | None]:
    """The ingest queue for a command outside the API (``vidlib import-s3``).

    ``None`` on the in-memory queue, whose tasks live inside the API process: the
    server's sweeper queues the new rows when it runs. With Redis the videos are queued
    for ``vidlib worker`` at once; an unreachable queue is logged and the sweeper
    queues them later.
    """
    config = BackgroundConfig.from_settings(settings)
    if config.backend == "memory":
        yield None
        return
    broker = create_broker(config)
    try:
        await broker.startup()
    except Exception as exc:
        log.warning("the task queue is unreachable (%s)", type(exc).__name__)
        await broker.shutdown()
        yield None
        return
    try:
        yield TaskQueue(broker, INGEST_TASK)
    finally:
        await broker.shutdown()


# -- the worker process ------------------------------------------------------------------


async def serve_worker(settings: Settings, config: BackgroundConfig, stop: asyncio.Event) -> None:
    """Run tasks from the Redis stream, the sweeper and maintenance until ``stop``."""
    engine = create_engine(settings.resolved_database_url)
    store = await open_store(settings)
    broker = create_broker(config)
    broker.is_worker_process = True
    context = _context(settings, config, create_sessionmaker(engine), store, broker)
    running: set[asyncio.Task[Any]] = set()
    register_tasks(broker, context, running)
    periodic: asyncio.Task[None] | None = None
    try:
        await broker.startup()
        periodic = asyncio.create_task(_periodic_work(context))
        log.info("worker started (concurrency %d)", config.concurrency)
        while not stop.is_set():
            receiver = Receiver(
                broker,
                max_async_tasks=config.concurrency,
                propagate_exceptions=False,
                run_startup=False,
                wait_tasks_timeout=SHUTDOWN_GRACE_SECONDS,
            )
            try:
                await receiver.listen(stop)
            except Exception:
                # Redis restarted or unreachable: tasks in flight go on; reconnect.
                log.exception("lost the queue; reconnecting in %.0f s", RECONNECT_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)
                with contextlib.suppress(Exception):
                    await broker.startup()  # the stream and its group may be gone
    finally:
        if periodic is not None:
            periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await periodic
        await _drain(running, 0)
        await context.later.aclose()
        await _drain(running, 0)
        await context.media.aclose()
        await broker.shutdown()
        await store.close()
        await engine.dispose()
        log.info("worker stopped")


def run_worker(settings: Settings, *, config: BackgroundConfig | None = None) -> None:
    """The ``vidlib worker`` process; returns after SIGTERM or SIGINT."""
    config = config or BackgroundConfig.from_settings(settings)
    if config.backend != "redis":
        raise ConfigError(
            "vidlib worker needs Redis: set VIDLIB_REDIS_URL. Without it, background "
            "work runs inside the API process."
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_worker(settings, config, stop)

    asyncio.run(main())
