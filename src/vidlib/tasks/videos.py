"""The ingest task: a new video's duration, metadata and thumbnail, then ``ready``.

Idempotent and safe to deliver more than once: the task claims the video with a
lease in ``video_ingest`` and writes only while it still holds that claim; a video
that is no longer ``processing`` is left alone.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from vidlib.db.base import utcnow
from vidlib.jobs.repository import JobRepository
from vidlib.media import MediaReport
from vidlib.tasks.context import LeaseLost, TaskContext, with_lease
from vidlib.tasks.media import media_source
from vidlib.tasks.repository import IngestRepository
from vidlib.tasks.retry import Failure, backoff, classify
from vidlib.uploads.names import safe_stem
from vidlib.videos.models import Video, VideoStatus
from vidlib.videos.repository import VideoRepository
from vidlib.videos.schemas import RESERVED_METADATA_KEYS

log = logging.getLogger("vidlib.tasks.ingest")

_KEY_NAME = re.compile(r"^(\d{9,11})_(.+)$")
INTERRUPTED = "Processing was interrupted too many times."


@dataclass(frozen=True, slots=True)
class _Claimed:
    video_id: uuid.UUID
    user_id: uuid.UUID
    s3_key: str
    created_at: datetime
    attempt: int


def thumbnail_key(user_id: uuid.UUID, s3_key: str, created: datetime) -> str:
    """``uploads/users/{user_id}/thumbnails/{unix_ts}_{stem}_thumb.jpg`` for a video key.

    The timestamp and stem come from the video's key (``…/{unix_ts}_{name}.{ext}``);
    keys without that shape (imported objects) use the row's creation time.
    """
    name = s3_key.rsplit("/", 1)[-1]
    match = _KEY_NAME.match(name)
    if match:
        timestamp, rest = match.group(1), match.group(2)
    else:
        timestamp, rest = str(int(created.timestamp())), name
    return f"uploads/users/{user_id}/thumbnails/{timestamp}_{safe_stem(rest)}_thumb.jpg"


def merged_metadata(existing: dict[str, Any] | None, derived: dict[str, Any]) -> dict[str, Any]:
    """The user's own keys kept, every key processing owns replaced by ``derived``."""
    kept = {k: v for k, v in (existing or {}).items() if k not in RESERVED_METADATA_KEYS}
    return {**kept, **derived}


async def ingest_video(ctx: TaskContext, video_id: uuid.UUID) -> None:
    """Process one video (a no-op unless it is live, ``processing`` and unclaimed)."""
    claimed = await _claim(ctx, video_id)
    if claimed is None:
        return
    log.info("processing video %s (attempt %d)", video_id, claimed.attempt)
    if claimed.attempt > ctx.config.max_attempts:
        # Claims that lapsed (the worker died each time) used the attempts up.
        await _fail(ctx, claimed, Failure(INTERRUPTED, True, "interrupted"))
        return

    async def renew() -> bool:
        async with ctx.sessionmaker() as session, session.begin():
            now = utcnow()
            return await IngestRepository(session).renew(
                video_id, claimed.attempt, now=now, lease_until=ctx.lease_until(now)
            )

    try:
        report = await with_lease(_analyse(ctx, claimed), renew, ctx.renew_every)
    except LeaseLost:
        log.info("video %s was taken over by another attempt", video_id)
        return
    except Exception as exc:
        failure = classify(exc)
        log.info("processing video %s failed: %s (%s)", video_id, failure.reason, failure.code)
        if failure.permanent or claimed.attempt >= ctx.config.max_attempts:
            await _fail(ctx, claimed, failure)
        else:
            await _retry(ctx, claimed, failure)
        return
    await _finish(ctx, claimed, *report)


async def _claim(ctx: TaskContext, video_id: uuid.UUID) -> _Claimed | None:
    async with ctx.sessionmaker() as session, session.begin():
        repo = IngestRepository(session)
        video = await repo.processing_video(video_id)
        if video is None:
            return None
        now = utcnow()
        attempt = await repo.claim(video_id, now=now, lease_until=ctx.lease_until(now))
        if attempt is None:
            return None
        return _Claimed(video.id, video.user_id, video.s3_key, video.created_at, attempt)


async def _analyse(ctx: TaskContext, claimed: _Claimed) -> tuple[MediaReport, str]:
    """Analyse the stored object and store its thumbnail; (report, thumbnail key)."""
    source = media_source(ctx.store, claimed.s3_key, ttl_seconds=ctx.config.source_url_ttl_seconds)
    report = await ctx.media.analyze(source)
    key = await _free_thumbnail_key(ctx, claimed)
    # Overwrites: a repeated attempt writes the same bytes to the same key.
    await ctx.store.put_bytes(key, report.thumbnail_jpeg, content_type="image/jpeg")
    return report, key


async def _free_thumbnail_key(ctx: TaskContext, claimed: _Claimed) -> str:
    """The contract's thumbnail key, unless another video (same second, same stem,
    another extension) already has it; then one made unique with the video's id."""
    key = thumbnail_key(claimed.user_id, claimed.s3_key, claimed.created_at)
    async with ctx.sessionmaker() as session:
        taken = await session.scalar(
            select(Video.id).where(Video.thumbnail_s3_key == key, Video.id != claimed.video_id)
        )
    if taken is None:
        return key
    return key.removesuffix("_thumb.jpg") + f"_{claimed.video_id.hex[:8]}_thumb.jpg"


async def _finish(ctx: TaskContext, claimed: _Claimed, report: MediaReport, thumb: str) -> None:
    info = report.info
    async with ctx.sessionmaker() as session, session.begin():
        repo = IngestRepository(session)
        if not await repo.holds(claimed.video_id, claimed.attempt):
            return  # taken over; the other attempt writes the same result
        video = await session.get(Video, claimed.video_id, populate_existing=True)
        if video is None:
            await ctx.store.delete(thumb)  # purged meanwhile
            return
        if video.status == VideoStatus.processing.value:
            derived: dict[str, Any] = {**info.metadata(), "container": info.container}
            await VideoRepository(session).update_fields(
                video,
                duration=round(info.duration, 2) if info.duration is not None else None,
                media_metadata=merged_metadata(video.media_metadata, derived),
                thumbnail_s3_key=thumb,
                thumbnail_url=ctx.store.object_url(thumb),
                status=VideoStatus.ready.value,
            )
        await repo.release(claimed.video_id, claimed.attempt, now=utcnow())
    log.info("video %s is ready", claimed.video_id)
    await _wake_jobs(ctx, claimed.video_id)


async def _fail(ctx: TaskContext, claimed: _Claimed, failure: Failure) -> None:
    async with ctx.sessionmaker() as session, session.begin():
        repo = IngestRepository(session)
        if not await repo.holds(claimed.video_id, claimed.attempt):
            return
        video = await session.get(Video, claimed.video_id, populate_existing=True)
        if video is not None and video.status == VideoStatus.processing.value:
            await VideoRepository(session).update_fields(
                video,
                media_metadata=merged_metadata(video.media_metadata, {"error": failure.reason}),
                status=VideoStatus.failed.value,
            )
        await repo.release(claimed.video_id, claimed.attempt, now=utcnow(), error=failure.reason)
    log.info("video %s failed: %s", claimed.video_id, failure.reason)
    await _wake_jobs(ctx, claimed.video_id)


async def _retry(ctx: TaskContext, claimed: _Claimed, failure: Failure) -> None:
    delay = backoff(claimed.attempt, base=ctx.config.retry_base, cap=ctx.config.retry_max)
    now = utcnow()
    async with ctx.sessionmaker() as session, session.begin():
        released = await IngestRepository(session).release(
            claimed.video_id,
            claimed.attempt,
            now=now,
            error=failure.reason,
            next_attempt_at=now + delay,
        )
    if released:
        ctx.later.call(delay, ctx.kick_ingest, claimed.video_id)


async def _wake_jobs(ctx: TaskContext, video_id: uuid.UUID) -> None:
    """Jobs waiting for this video's processing can run now (their postponement ends)."""
    async with ctx.sessionmaker() as session, session.begin():
        jobs = JobRepository(session)
        await jobs.end_wait(video_id, now=utcnow())
        waiting = await jobs.waiting_on(video_id)
    for job_id in waiting:
        try:
            await ctx.kick_job(job_id)
        except Exception:
            log.warning("could not queue job %s; the sweeper will", job_id, exc_info=True)
