"""Job operations: create (from an upload or a library video), list, read, cancel."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vidlib.auth.models import Account
from vidlib.db.base import utcnow
from vidlib.db.session import after_commit
from vidlib.errors import BadRequest, Conflict, NotFound, Unprocessable
from vidlib.jobs.models import FINISHED, Job, JobStatus, TranscriptSource
from vidlib.jobs.processors import InvalidOptions, get_processor, kinds
from vidlib.jobs.repository import JobRepository
from vidlib.jobs.schemas import (
    MAX_OPTIONS_BYTES,
    JobCreateIn,
    JobListOut,
    JobListParams,
    JobOut,
    JobTranscriptOut,
    JobVideoOut,
)
from vidlib.storage.base import ObjectStore
from vidlib.uploads.errors import UploadNotFound
from vidlib.uploads.repository import TranscriptRepository
from vidlib.uploads.service import video_of_upload
from vidlib.uploads.transcripts import InvalidTranscript, parse_transcript
from vidlib.videos.models import Video
from vidlib.videos.repository import VideoRepository
from vidlib.videos.service import VideoNotFound

log = logging.getLogger("vidlib.jobs")


class JobQueue(Protocol):
    """Where committed jobs go to be run."""

    async def enqueue(self, job_id: uuid.UUID) -> None:
        """Queue one committed job (delivery is at least once)."""
        ...


class JobNotFound(NotFound):
    """404 for a job that is absent or another user's."""

    message = "Job not found."


class TranscriptNotFound(NotFound):
    """404 for a transcript that is absent or another user's."""

    message = "Transcript not found."


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def stored_files(result: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The output files a job's result lists (``files``: name to ``{"s3_key", ...}``)."""
    files = (result or {}).get("files")
    if not isinstance(files, dict):
        return {}
    return {
        name: entry
        for name, entry in files.items()
        if isinstance(entry, dict) and isinstance(entry.get("s3_key"), str)
    }


class JobPresenter:
    """Turns rows into job objects; output files get fresh presigned URLs."""

    def __init__(self, store: ObjectStore, url_ttl_seconds: int) -> None:
        self.store = store
        self.ttl = url_ttl_seconds

    def _result(self, result: dict[str, Any] | None) -> dict[str, Any] | None:
        files = stored_files(result)
        if result is None or not files:
            return result
        # Keys are stored, URLs made on every read: they never go stale.
        with_urls = {
            name: {**entry, "url": self.store.presign_get(entry["s3_key"], expires_in=self.ttl)}
            for name, entry in files.items()
        }
        return {**result, "files": with_urls}

    def job(self, job: Job, video: Video) -> JobOut:
        """One job object."""
        transcript = None
        if job.transcript_source is not None:
            transcript = JobTranscriptOut(
                source=job.transcript_source,
                characters=job.transcript_characters or 0,
            )
        return JobOut(
            id=job.id,
            kind=job.kind,
            status=job.status,
            video=JobVideoOut(id=video.id, s3_key=video.s3_key, filename=video.filename),
            transcript=transcript,
            title=job.title,
            options=job.options or {},
            progress=min(1.0, max(0.0, job.progress)),
            result=self._result(job.result),
            error=job.error,
            attempts=job.attempts,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class JobService:
    """The operations behind ``/api/v1/jobs``; every call is scoped to one user."""

    def __init__(
        self, session: AsyncSession, *, presenter: JobPresenter, queue: JobQueue | None
    ) -> None:
        self.session = session
        self.repo = JobRepository(session)
        self.presenter = presenter
        self.queue = queue

    async def create(self, user: Account, body: JobCreateIn) -> JobOut:
        """Validate as the original design does, then store and (after commit) queue."""
        if not body.video_upload_id and not body.s3_video_id:
            raise BadRequest("Either video_upload_id or s3_video_id must be provided")
        if body.video_upload_id and body.s3_video_id:
            raise BadRequest("Provide either video_upload_id or s3_video_id, not both")
        if body.transcript_text and body.transcript_upload_id:
            raise BadRequest("Provide either transcript_text or transcript_upload_id, not both")
        processor = get_processor(body.kind)
        if processor is None:
            raise BadRequest(f"Unknown job kind {body.kind!r}; known kinds: {', '.join(kinds())}.")
        options = dict(body.options or {})
        if len(json.dumps(options)) > MAX_OPTIONS_BYTES:
            raise Unprocessable("The options are too large.")
        try:
            options = processor.validate_options(options)
        except InvalidOptions as exc:
            raise BadRequest(str(exc)) from exc

        upload_id: uuid.UUID | None = None
        if body.s3_video_id:
            video = await VideoRepository(self.session).get_live(user.id, body.s3_video_id)
            if video is None:
                raise VideoNotFound()
        else:
            upload_id = _uuid(body.video_upload_id or "")
            video = None
            if upload_id is not None:
                video = await video_of_upload(self.session, user_id=user.id, upload_id=upload_id)
            if video is None:
                raise UploadNotFound()

        job = Job(
            user_id=user.id,
            video_id=video.id,
            upload_id=upload_id,
            kind=body.kind,
            status=JobStatus.queued.value,
            title=body.title,
            options=options,
            progress=0.0,
            attempts=0,
        )
        if body.transcript_upload_id:
            transcript_id = _uuid(body.transcript_upload_id)
            transcript = None
            if transcript_id is not None:
                transcript = await TranscriptRepository(self.session).get_owned(
                    user.id, transcript_id
                )
            if transcript is None:
                raise TranscriptNotFound()
            job.transcript_source = TranscriptSource.upload.value
            job.transcript_id = transcript.id
            job.transcript_format = transcript.format
            job.transcript_characters = transcript.characters
        elif body.transcript_text:
            try:
                # Up to 2 MiB of subtitles: milliseconds of CPU, kept off the event loop.
                parsed = await asyncio.to_thread(
                    parse_transcript, body.transcript_text.encode(), None
                )
            except InvalidTranscript as exc:
                raise Unprocessable(str(exc)) from exc
            job.transcript_source = TranscriptSource.text.value
            job.transcript_text = parsed.text
            job.transcript_format = parsed.format.value
            job.transcript_characters = parsed.characters

        now = utcnow()
        job.created_at = job.updated_at = now
        await self.repo.add(job)
        queue = self.queue
        if queue is not None:
            job_id = job.id

            async def enqueue() -> None:
                # After the commit: a worker never sees a job that is not in the database.
                # If the broker is down the sweeper queues the job later.
                try:
                    await queue.enqueue(job_id)
                except Exception:
                    log.warning("could not enqueue job %s", job_id, exc_info=True)

            after_commit(self.session, enqueue)
        return self.presenter.job(job, video)

    async def list_page(self, user: Account, params: JobListParams) -> JobListOut:
        """A page of the user's jobs, newest first."""
        rows = await self.repo.page(
            user_id=user.id,
            status=params.status,
            limit=params.page_size,
            offset=(params.page - 1) * params.page_size,
        )
        total = await self.repo.count(user_id=user.id, status=params.status)
        total_pages = math.ceil(total / params.page_size)
        return JobListOut(
            jobs=[self.presenter.job(job, video) for job, video in rows],
            total_count=total,
            page=params.page,
            page_size=params.page_size,
            total_pages=total_pages,
            has_more=params.page < total_pages,
        )

    async def _get(self, user: Account, job_id: uuid.UUID) -> tuple[Job, Video]:
        row = await self.repo.get_owned(user.id, job_id)
        if row is None:
            raise JobNotFound()
        return row

    async def get(self, user: Account, job_id: uuid.UUID) -> JobOut:
        """One of the user's jobs."""
        return self.presenter.job(*await self._get(user, job_id))

    async def cancel(self, user: Account, job_id: uuid.UUID) -> JobOut:
        """Cancel a queued or running job; 409 once it has finished."""
        job, video = await self._get(user, job_id)
        if job.status in FINISHED or not await self.repo.cancel(job.id, now=utcnow()):
            await self.session.refresh(job)
            raise Conflict(f"The job has already finished ({job.status}); it cannot be cancelled.")
        await self.session.refresh(job)
        return self.presenter.job(job, video)


async def purge_jobs_of_deleted_videos(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    *,
    older_than: timedelta,
    batch_size: int = 100,
) -> int:
    """Before deleted videos are purged: delete their jobs' output files, then the jobs.

    Each video's jobs go in one transaction holding the video locked, as the purge
    does, so a restore cannot slip in; a storage failure leaves the jobs for the
    next run. Returns the number of jobs removed.
    """
    cutoff = utcnow() - older_than
    removed = 0
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session:
            video_ids = await JobRepository(session).videos_deleted_before(
                cutoff, batch_size, after=after
            )
        for video_id in video_ids:
            async with sessionmaker() as session, session.begin():
                if await VideoRepository(session).lock_deleted_before(video_id, cutoff) is None:
                    continue
                repo = JobRepository(session)
                jobs = await repo.of_video(video_id)
                for job in jobs:
                    for entry in stored_files(job.result).values():
                        await store.delete(entry["s3_key"])
                await repo.delete_of_video(video_id)
                removed += len(jobs)
        if len(video_ids) < batch_size:
            return removed
        after = video_ids[-1]
