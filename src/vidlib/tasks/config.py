"""How background work runs: queue backend, leases, retries, periodic work."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from vidlib.config import Settings
from vidlib.media import MediaLimits

QueueBackend = Literal["memory", "redis"]
MediaExecutor = Literal["process", "thread"]


@dataclass(frozen=True, slots=True)
class BackgroundConfig:
    """Tunables of the queue, the tasks and the periodic work.

    Production values are the defaults; tests shorten the times.
    """

    # "memory": tasks run inside the API process (the embedded default);
    # "redis": the API only enqueues and ``vidlib worker`` runs them.
    backend: QueueBackend = "memory"
    redis_url: str | None = None
    # Redis stream and consumer group of the task queue.
    queue_name: str = "vidlib:tasks"
    # Tasks one worker process runs at once (media analysis is further limited below).
    concurrency: int = 8
    # A claim on a video or a job lasts this long unless its worker renews it; a
    # killed worker's task is taken over once it lapses.
    lease: timedelta = timedelta(seconds=60)
    # Claims (attempts) before a video or job is given up as failed.
    max_attempts: int = 5
    # Exponential backoff after a transient failure: base * 2**(attempt-1), capped.
    retry_base: timedelta = timedelta(seconds=10)
    retry_max: timedelta = timedelta(minutes=10)
    # How often a job waiting for its video's processing looks again (it is also
    # woken as soon as the video is processed).
    video_wait: timedelta = timedelta(seconds=30)
    # The sweeper: how often it runs, and how long a row may sit unclaimed after it
    # was queued before it is queued again (the broker may have lost the message).
    sweep_interval: timedelta = timedelta(seconds=30)
    requeue_after: timedelta = timedelta(minutes=5)
    # Unacknowledged Redis messages are redelivered after this idle time.
    redelivery_idle: timedelta = timedelta(minutes=10)
    # Purge of soft-deleted videos past retention and clean-up of expired uploads.
    maintenance_interval: timedelta = timedelta(hours=1)
    retention: timedelta = timedelta(days=30)
    # Media analysis runs in a pool of processes (memory-capped) or threads.
    media_executor: MediaExecutor = "process"
    media_workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    media_memory_limit_mb: int = 2048
    media_limits: MediaLimits = field(default_factory=MediaLimits)
    # Lifetime of the presigned URL media analysis reads the video through.
    source_url_ttl_seconds: int = 900

    def __post_init__(self) -> None:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("the redis queue backend needs a redis_url")
        if self.max_attempts < 1 or self.concurrency < 1 or self.media_workers < 1:
            raise ValueError("max_attempts, concurrency and media_workers must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> BackgroundConfig:
        """The configuration a deployment's settings describe.

        The queue is Redis whenever ``redis_url`` is set (then ``vidlib worker`` must
        run), unless ``queue_backend`` says ``memory``.
        """
        wanted = settings.queue_backend
        backend: QueueBackend = "memory"
        if wanted == "redis" or (wanted == "auto" and settings.redis_url):
            backend = "redis"
        defaults = cls()
        return cls(
            backend=backend,
            redis_url=settings.redis_url,
            concurrency=settings.worker_concurrency,
            media_executor=settings.media_executor,
            media_workers=settings.media_workers or defaults.media_workers,
            media_memory_limit_mb=settings.media_memory_limit_mb,
            retention=timedelta(days=settings.purge_retention_days),
        )
