"""Periodic work: the sweeper (the database's view of what must run) and maintenance.

The sweeper makes the database, not the broker, the source of truth: every video
still ``processing`` and every unfinished job that nobody holds a live claim on,
and that was not queued recently, is queued again. That covers a message lost by
the broker (or never sent, when it was down at upload time), a worker killed
mid-task (its lease lapses) and retries whose in-process timer died with it.

Maintenance purges soft-deleted videos past retention (their jobs' files first),
expires abandoned upload sessions and drops idempotency records past their lifetime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from vidlib.db.base import utcnow
from vidlib.idempotency.middleware import purge_expired
from vidlib.jobs.repository import JobRepository
from vidlib.jobs.service import purge_jobs_of_deleted_videos
from vidlib.tasks.context import TaskContext
from vidlib.tasks.repository import IngestRepository
from vidlib.uploads.maintenance import ReconcileReport, abort_stale_multipart, expire_sessions
from vidlib.uploads.names import KEY_ROOT
from vidlib.videos.service import purge_deleted

log = logging.getLogger("vidlib.tasks.periodic")

SWEEP_BATCH = 500
# Incomplete multipart uploads no session owns are aborted after this long.
MULTIPART_GRACE = timedelta(hours=24)
# Jobs of deleted videos are removed this much before the videos themselves, so the
# purge never cascades over a job whose files are still stored.
PURGE_MARGIN = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep queued."""

    videos: int
    jobs: int


async def sweep(ctx: TaskContext) -> SweepReport:
    """Queue again every video and job the database says should be running."""
    now = utcnow()
    queued_before = now - ctx.config.requeue_after
    async with ctx.sessionmaker() as session, session.begin():
        ingest = IngestRepository(session)
        video_ids = await ingest.due(now=now, queued_before=queued_before, limit=SWEEP_BATCH)
        if video_ids:
            await ingest.mark_enqueued(video_ids, now=now)
        jobs = JobRepository(session)
        job_ids = await jobs.due(now=now, queued_before=queued_before, limit=SWEEP_BATCH)
        if job_ids:
            await jobs.mark_enqueued(job_ids, now=now)
    for video_id in video_ids:
        await ctx.kick_ingest(video_id)
    for job_id in job_ids:
        await ctx.kick_job(job_id)
    if video_ids or job_ids:
        log.info("sweeper queued %d videos and %d jobs", len(video_ids), len(job_ids))
    return SweepReport(len(video_ids), len(job_ids))


async def maintain(ctx: TaskContext) -> None:
    """Purge deleted videos past retention; expire abandoned uploads and old
    idempotency records."""
    retention = ctx.config.retention
    removed = await purge_jobs_of_deleted_videos(ctx.sessionmaker, ctx.store, older_than=retention)
    purged = await purge_deleted(ctx.sessionmaker, ctx.store, older_than=retention + PURGE_MARGIN)
    report = ReconcileReport(fixed=True)
    await expire_sessions(ctx.sessionmaker, ctx.store, report, now=utcnow())
    await abort_stale_multipart(
        ctx.sessionmaker, ctx.store, report, prefix=KEY_ROOT, cutoff=utcnow() - MULTIPART_GRACE
    )
    forgotten = await purge_expired(ctx.sessionmaker)
    if removed or purged or report.expired_sessions or report.stale_multipart or forgotten:
        log.info(
            "maintenance: %d jobs and %d videos purged, %d upload sessions expired, "
            "%d stale multipart uploads aborted, %d idempotency records dropped",
            removed,
            purged,
            len(report.expired_sessions),
            len(report.stale_multipart),
            forgotten,
        )


async def _every(name: str, interval: timedelta, work: Callable[[], Awaitable[object]]) -> None:
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic %s failed; retrying at the next run", name)
        await asyncio.sleep(interval.total_seconds())


async def run_periodic(ctx: TaskContext) -> None:
    """Sweep and maintain at their intervals, until cancelled."""
    async with asyncio.TaskGroup() as group:
        group.create_task(_every("sweep", ctx.config.sweep_interval, lambda: sweep(ctx)))
        group.create_task(
            _every("maintenance", ctx.config.maintenance_interval, lambda: maintain(ctx))
        )
