"""The job task: run a queued job's processor, with a lease, retries and cancellation.

A job whose video is still being processed waits (no attempt is used): it is
postponed by ``video_wait`` and woken as soon as the ingest task finishes the video.
A running job stops at its next checkpoint (``progress``, or the lease renewal
that runs beside it) once it is cancelled; its output files are then removed.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from vidlib.db.base import utcnow
from vidlib.jobs.models import Job, JobStatus, TranscriptSource
from vidlib.jobs.processors import (
    JobCancelled,
    JobInput,
    TranscriptInput,
    VideoInput,
    get_processor,
)
from vidlib.jobs.repository import UNFINISHED, JobRepository, output_key
from vidlib.tasks.context import LeaseLost, TaskContext, with_lease
from vidlib.tasks.media import media_source
from vidlib.tasks.retry import Failure, backoff, classify
from vidlib.uploads.models import Transcript
from vidlib.videos.models import Video, VideoStatus

log = logging.getLogger("vidlib.tasks.jobs")

INTERRUPTED = "The job was interrupted too many times."
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class _RunContext:
    """The :class:`~vidlib.jobs.processors.JobContext` of one attempt."""

    def __init__(self, ctx: TaskContext, job: JobInput) -> None:
        self._ctx = ctx
        self._job = job
        self.files: dict[str, dict[str, Any]] = {}

    @property
    def job(self) -> JobInput:
        """The job's input."""
        return self._job

    def media_source(self) -> str:
        """A path or URL to read the job's video from."""
        return media_source(
            self._ctx.store,
            self._job.video.s3_key,
            ttl_seconds=self._ctx.config.source_url_ttl_seconds,
        )

    async def progress(self, fraction: float) -> None:
        """Record progress; ``JobCancelled`` once the job was cancelled or taken over."""
        if not await _renew(self._ctx, self._job, progress=min(1.0, max(0.0, fraction))):
            raise JobCancelled()

    async def put_file(self, name: str, data: bytes, *, content_type: str, extension: str) -> str:
        """Store an output file beside the user's videos; listed in ``result.files``."""
        if not _NAME.fullmatch(name) or not _NAME.fullmatch(extension):
            raise ValueError("file names and extensions are short lowercase words")
        job = self._job
        key = output_key(job.video.user_id, job.kind, job.id, name, extension)
        await self._ctx.store.put_bytes(key, data, content_type=content_type)
        self.files[name] = {"s3_key": key, "content_type": content_type, "size": len(data)}
        return key

    async def discard_files(self) -> None:
        """Remove what this attempt stored (the job was cancelled or failed)."""
        for entry in self.files.values():
            try:
                await self._ctx.store.delete(entry["s3_key"])
            except Exception:
                log.warning("could not delete %s", entry["s3_key"], exc_info=True)
        self.files.clear()


async def _renew(ctx: TaskContext, job: JobInput, *, progress: float | None = None) -> bool:
    async with ctx.sessionmaker() as session, session.begin():
        now = utcnow()
        return await JobRepository(session).renew(
            job.id, job.attempt, now=now, lease_until=ctx.lease_until(now), progress=progress
        )


async def run_job(ctx: TaskContext, job_id: uuid.UUID) -> None:
    """Run one job (a no-op unless it is unfinished, due and unclaimed)."""
    async with ctx.sessionmaker() as session:
        job = await session.get(Job, job_id)
        if job is None or job.status not in UNFINISHED:
            return
        video = await session.get(Video, job.video_id)
    if video is None:
        return  # purged: the job went with it
    if job.status == JobStatus.queued.value and _waits_for(video):
        await _postpone(ctx, job_id)
        return

    async with ctx.sessionmaker() as session, session.begin():
        now = utcnow()
        attempt = await JobRepository(session).claim(
            job_id, now=now, lease_until=ctx.lease_until(now)
        )
    if attempt is None:
        return
    if attempt > ctx.config.max_attempts:
        await _end(ctx, job_id, attempt, JobStatus.failed, error=INTERRUPTED)
        return

    loaded = await _load(ctx, job_id, attempt)
    if isinstance(loaded, Failure):
        await _end(ctx, job_id, attempt, JobStatus.failed, error=loaded.reason)
        return
    job_input = loaded
    processor = get_processor(job_input.kind)
    if processor is None:
        await _end(
            ctx, job_id, attempt, JobStatus.failed, error=f"Unknown job kind {job_input.kind!r}."
        )
        return

    run = _RunContext(ctx, job_input)
    try:
        result = await with_lease(
            processor.run(run), lambda: _renew(ctx, job_input), ctx.renew_every
        )
        if run.files:
            result = {**result, "files": run.files}
        json.dumps(result)  # a result the database cannot store is the processor's bug
    except (LeaseLost, JobCancelled):
        log.info("job %s was cancelled or taken over", job_id)
        await run.discard_files()
        return
    except Exception as exc:
        await run.discard_files()
        failure = classify(exc)
        log.info("job %s failed: %s (%s)", job_id, failure.reason, failure.code)
        if failure.permanent or attempt >= ctx.config.max_attempts:
            await _end(ctx, job_id, attempt, JobStatus.failed, error=failure.reason)
        else:
            await _retry(ctx, job_id, attempt, failure)
        return
    if not await _end(ctx, job_id, attempt, JobStatus.succeeded, result=result):
        await run.discard_files()  # cancelled at the last moment


def _waits_for(video: Video) -> bool:
    return video.deleted_at is None and video.status == VideoStatus.processing.value


async def _postpone(ctx: TaskContext, job_id: uuid.UUID) -> None:
    now = utcnow()
    async with ctx.sessionmaker() as session, session.begin():
        postponed = await JobRepository(session).postpone(
            job_id, now=now, until=now + ctx.config.video_wait
        )
    if postponed:
        ctx.later.call(ctx.config.video_wait, ctx.kick_job, job_id)


async def _load(ctx: TaskContext, job_id: uuid.UUID, attempt: int) -> JobInput | Failure:
    """The job's input as the processor sees it, or why the job cannot run."""
    async with ctx.sessionmaker() as session:
        job = await session.get(Job, job_id, populate_existing=True)
        video = await session.get(Video, job.video_id) if job else None
        if job is None or video is None:
            return Failure("The video was deleted.", True, "gone")
        if video.deleted_at is not None:
            return Failure("The video was deleted.", True, "gone")
        if video.status == VideoStatus.failed.value:
            reason = (video.media_metadata or {}).get("error") or "unknown error"
            return Failure(f"The video could not be processed: {reason}", True, "video_failed")
        transcript = None
        if job.transcript_source == TranscriptSource.upload.value:
            stored = await session.get(Transcript, job.transcript_id) if job.transcript_id else None
            if stored is None:
                return Failure("The transcript was deleted.", True, "gone")
            transcript = TranscriptInput(stored.content, stored.format, job.transcript_source)
        elif job.transcript_source == TranscriptSource.text.value and job.transcript_text:
            transcript = TranscriptInput(
                job.transcript_text, job.transcript_format or "txt", job.transcript_source
            )
        return JobInput(
            id=job.id,
            kind=job.kind,
            title=job.title,
            options=dict(job.options or {}),
            video=VideoInput(
                id=video.id,
                user_id=video.user_id,
                s3_key=video.s3_key,
                filename=video.filename,
                content_type=video.content_type,
                duration=float(video.duration) if video.duration is not None else None,
                metadata=video.media_metadata,
                status=video.status,
            ),
            transcript=transcript,
            attempt=attempt,
        )


async def _end(
    ctx: TaskContext,
    job_id: uuid.UUID,
    attempt: int,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    async with ctx.sessionmaker() as session, session.begin():
        ended = await JobRepository(session).finish(
            job_id, attempt, now=utcnow(), status=status, result=result, error=error
        )
    if ended:
        log.info("job %s %s", job_id, status.value)
    return ended


async def _retry(ctx: TaskContext, job_id: uuid.UUID, attempt: int, failure: Failure) -> None:
    delay = backoff(attempt, base=ctx.config.retry_base, cap=ctx.config.retry_max)
    now = utcnow()
    async with ctx.sessionmaker() as session, session.begin():
        requeued = await JobRepository(session).retry_later(
            job_id, attempt, now=now, at=now + delay, error=failure.reason
        )
    if requeued:
        ctx.later.call(delay, ctx.kick_job, job_id)
