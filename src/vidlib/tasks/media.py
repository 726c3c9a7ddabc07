"""Media analysis off the event loop: a pool of memory-capped processes, or threads."""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import resource
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from vidlib.media import MediaLimits, MediaReport, analyze
from vidlib.storage.base import ObjectStore
from vidlib.storage.local import LocalStore, validate_key

log = logging.getLogger("vidlib.tasks.media")
T = TypeVar("T")

# Analyses a process runs before it is replaced: bounds what a slow leak in FFmpeg
# or a fragmented heap can accumulate.
TASKS_PER_PROCESS = 200


def _ready() -> bool:
    """A no-op run in each new process: starts it before the first real analysis."""
    return True


def _cap_memory(limit_bytes: int) -> None:
    """Process-pool initializer: cap the address space, so a hostile file cannot
    exhaust the machine (allocation fails inside FFmpeg, which reports an error)."""
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


class MediaRunner:
    """Runs :func:`vidlib.media.analyze` in a worker pool; never on the event loop."""

    def __init__(
        self,
        *,
        executor: str = "process",
        workers: int = 2,
        memory_limit_mb: int = 2048,
        limits: MediaLimits | None = None,
    ) -> None:
        self.kind = executor
        self.workers = workers
        self.memory_limit = memory_limit_mb * 1024 * 1024
        self.limits = limits or MediaLimits()
        self._pool: Executor | None = None

    def _new_pool(self) -> Executor:
        if self.kind == "thread":
            return ThreadPoolExecutor(self.workers, thread_name_prefix="vidlib-media")
        # forkserver: children are forks of a clean, single-threaded server process (not
        # of this one, which runs an event loop and threads) that has already imported
        # the media code and FFmpeg, so a new child is ready in milliseconds.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["vidlib.media"])
        return ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_cap_memory,
            initargs=(self.memory_limit,),
            max_tasks_per_child=TASKS_PER_PROCESS,
        )

    async def _run(self, work: Callable[[], T]) -> T:
        if self._pool is None:
            self._pool = self._new_pool()
        pool = self._pool
        if isinstance(pool, ThreadPoolExecutor):
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        # Submitting may start processes, and the first start waits until the fork
        # server has imported FFmpeg: blocking, so it happens off the event loop.
        future = await asyncio.to_thread(pool.submit, work)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            # A child died (crash, memory cap): the pool is unusable; start a new one.
            if self._pool is pool:
                log.warning("a media analysis process died; restarting the pool")
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    async def warm_up(self) -> None:
        """Start the pool's processes now rather than on the first analysis."""
        await asyncio.gather(*(self._run(_ready) for _ in range(self.workers)))

    async def analyze(self, source: str) -> MediaReport:
        """Duration, metadata and thumbnail of ``source`` (a local path or an http(s) URL)."""
        return await self._run(functools.partial(analyze, source, limits=self.limits))

    async def aclose(self) -> None:
        """Stop the pool once analyses in flight end (each is bounded by its time limit)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def media_source(store: ObjectStore, key: str, *, ttl_seconds: int) -> str:
    """Where media analysis reads an object: a file path for the local store, else a
    presigned GET URL (ranged reads; nothing is downloaded whole)."""
    if isinstance(store, LocalStore):
        # The local store keeps each object as a plain file at ``root/key``; reading it
        # directly works wherever the worker shares the data directory, and needs no
        # listening server (an in-process API may have none).
        return str(store.root / validate_key(key))
    return store.presign_get(key, expires_in=ttl_seconds)
