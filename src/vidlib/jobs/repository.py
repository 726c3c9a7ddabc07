"""Every query on the ``jobs`` table."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vidlib.jobs.models import Job, JobStatus
from vidlib.tasks.repository import needs_requeue, rowcount
from vidlib.videos.models import Video

UNFINISHED = (JobStatus.queued.value, JobStatus.running.value)
# Output files of jobs: ``uploads/users/{user}/{kind}/{job id}[_{name}].{ext}``.
_OUTPUT_KEY = re.compile(
    r"^uploads/users/[^/]+/[a-z0-9][a-z0-9_-]*/"
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:_[^/.]+)?\.[a-z0-9]+$"
)


def output_key(user_id: uuid.UUID, kind: str, job_id: uuid.UUID, name: str, extension: str) -> str:
    """Where a job's output file is stored, beside the user's videos."""
    suffix = "" if name == extension else f"_{name}"
    return f"uploads/users/{user_id}/{kind}/{job_id}{suffix}.{extension}"


def job_id_of_output_key(key: str) -> uuid.UUID | None:
    """The job an output key belongs to, if it has the layout of one."""
    match = _OUTPUT_KEY.match(key)
    return uuid.UUID(match.group(1)) if match else None


class JobRepository:
    """Queries on one session; client reads are scoped to an owner, worker writes fenced."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- the API's side -------------------------------------------------------------

    async def add(self, job: Job) -> Job:
        """Insert a job (flush only)."""
        self.session.add(job)
        await self.session.flush()
        return job

    async def get_owned(self, user_id: uuid.UUID, job_id: uuid.UUID) -> tuple[Job, Video] | None:
        """One of the user's jobs with its video."""
        stmt = (
            select(Job, Video)
            .join(Video, Video.id == Job.video_id)
            .where(Job.id == job_id, Job.user_id == user_id)
        )
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else (row[0], row[1])

    def _filter(self, user_id: uuid.UUID, status: str | None) -> list[Any]:
        where: list[Any] = [Job.user_id == user_id]
        if status is not None:
            where.append(Job.status == status)
        return where

    async def page(
        self, *, user_id: uuid.UUID, status: str | None, limit: int, offset: int
    ) -> Sequence[tuple[Job, Video]]:
        """The user's jobs, newest first, with their videos."""
        stmt = (
            select(Job, Video)
            .join(Video, Video.id == Job.video_id)
            .where(*self._filter(user_id, status))
            .order_by(Job.created_at.desc(), Job.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [(job, video) for job, video in (await self.session.execute(stmt)).all()]

    async def count(self, *, user_id: uuid.UUID, status: str | None) -> int:
        """How many jobs the user has (with that status)."""
        stmt = select(func.count()).select_from(Job).where(*self._filter(user_id, status))
        return int((await self.session.execute(stmt)).scalar_one())

    async def cancel(self, job_id: uuid.UUID, *, now: datetime) -> bool:
        """Cancel a job not yet finished; a running one stops at its next checkpoint."""
        stmt = (
            update(Job)
            .where(Job.id == job_id, Job.status.in_(UNFINISHED))
            .values(
                status=JobStatus.cancelled.value,
                lease_expires_at=None,
                next_attempt_at=None,
                finished_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(rowcount(await self.session.execute(stmt)))

    # -- the worker's side ----------------------------------------------------------

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """A job by id."""
        return await self.session.get(Job, job_id, populate_existing=True)

    async def postpone(self, job_id: uuid.UUID, *, now: datetime, until: datetime) -> bool:
        """Leave a queued job waiting (for its video) until ``until``; no attempt used."""
        stmt = (
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued.value)
            .values(next_attempt_at=until, updated_at=now)
        )
        return bool(rowcount(await self.session.execute(stmt)))

    async def claim(self, job_id: uuid.UUID, *, now: datetime, lease_until: datetime) -> int | None:
        """Start an attempt: a due queued job, or a running one whose claim lapsed.

        Returns the attempt number (the fencing token of every later write), or None.
        """
        claimable = or_(
            and_(
                Job.status == JobStatus.queued.value,
                or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= now),
            ),
            and_(
                Job.status == JobStatus.running.value,
                Job.lease_expires_at.is_not(None),
                Job.lease_expires_at < now,
            ),
        )
        stmt = (
            update(Job)
            .where(Job.id == job_id, claimable)
            .values(
                status=JobStatus.running.value,
                attempts=Job.attempts + 1,
                lease_expires_at=lease_until,
                next_attempt_at=None,
                started_at=func.coalesce(Job.started_at, now),
                updated_at=now,
            )
            .returning(Job.attempts)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    def _fenced(self, job_id: uuid.UUID, attempt: int) -> Any:
        return update(Job).where(
            Job.id == job_id, Job.attempts == attempt, Job.status == JobStatus.running.value
        )

    async def renew(
        self,
        job_id: uuid.UUID,
        attempt: int,
        *,
        now: datetime,
        lease_until: datetime,
        progress: float | None = None,
    ) -> bool:
        """Extend the claim (and record progress); False once cancelled or taken over."""
        values: dict[str, Any] = {"lease_expires_at": lease_until}
        if progress is not None:
            values.update(progress=progress, updated_at=now)
        result = await self.session.execute(self._fenced(job_id, attempt).values(**values))
        return bool(rowcount(result))

    async def finish(
        self,
        job_id: uuid.UUID,
        attempt: int,
        *,
        now: datetime,
        status: JobStatus,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the outcome of an attempt that still holds the job."""
        values: dict[str, Any] = {
            "status": status.value,
            "error": error[:1000] if error else None,
            "lease_expires_at": None,
            "finished_at": now,
            "updated_at": now,
        }
        if status is JobStatus.succeeded:
            values.update(result=result, progress=1.0)
        stmt = self._fenced(job_id, attempt).values(**values)
        return bool(rowcount(await self.session.execute(stmt)))

    async def retry_later(
        self, job_id: uuid.UUID, attempt: int, *, now: datetime, at: datetime, error: str
    ) -> bool:
        """Put a failed attempt's job back in the queue, due at ``at``."""
        stmt = self._fenced(job_id, attempt).values(
            status=JobStatus.queued.value,
            error=error[:1000],
            lease_expires_at=None,
            next_attempt_at=at,
            updated_at=now,
        )
        return bool(rowcount(await self.session.execute(stmt)))

    async def end_wait(self, video_id: uuid.UUID, *, now: datetime) -> None:
        """Make the video's jobs that were postponed while it was processed due now
        (never attempted: a retry's back-off is left alone)."""
        stmt = (
            update(Job)
            .where(
                Job.video_id == video_id,
                Job.status == JobStatus.queued.value,
                Job.attempts == 0,
                Job.next_attempt_at.is_not(None),
            )
            .values(next_attempt_at=None, updated_at=now)
        )
        await self.session.execute(stmt)

    async def waiting_on(self, video_id: uuid.UUID) -> Sequence[uuid.UUID]:
        """Queued jobs of a video (woken when its processing ends)."""
        stmt = select(Job.id).where(Job.video_id == video_id, Job.status == JobStatus.queued.value)
        return (await self.session.scalars(stmt)).all()

    async def due(
        self, *, now: datetime, queued_before: datetime, limit: int
    ) -> Sequence[uuid.UUID]:
        """Unfinished jobs nobody is working on that should be (re)queued."""
        stmt = (
            select(Job.id)
            .where(
                Job.status.in_(UNFINISHED),
                needs_requeue(Job, now=now, queued_before=queued_before),
            )
            .order_by(Job.created_at)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def mark_enqueued(self, job_ids: Sequence[uuid.UUID], *, now: datetime) -> None:
        """Record that these jobs were put on the queue."""
        await self.session.execute(
            update(Job).where(Job.id.in_(list(job_ids))).values(enqueued_at=now)
        )

    # -- maintenance ----------------------------------------------------------------

    async def videos_deleted_before(
        self, cutoff: datetime, limit: int, *, after: uuid.UUID | None = None
    ) -> Sequence[uuid.UUID]:
        """Soft-deleted videos past ``cutoff`` that still have jobs, in id order."""
        stmt = (
            select(Job.video_id)
            .join(Video, Video.id == Job.video_id)
            .where(Video.deleted_at.is_not(None), Video.deleted_at < cutoff)
            .group_by(Job.video_id)
            .order_by(Job.video_id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(Job.video_id > after)
        return (await self.session.scalars(stmt)).all()

    async def of_video(self, video_id: uuid.UUID) -> Sequence[Job]:
        """Every job of a video."""
        stmt = select(Job).where(Job.video_id == video_id)
        return (await self.session.scalars(stmt)).all()

    async def delete_of_video(self, video_id: uuid.UUID) -> None:
        """Delete a video's jobs (their files are already gone)."""
        await self.session.execute(delete(Job).where(Job.video_id == video_id))

    async def existing(self, job_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Those of ``job_ids`` that are jobs."""
        if not job_ids:
            return set()
        stmt = select(Job.id).where(Job.id.in_(list(job_ids)))
        return set((await self.session.scalars(stmt)).all())


async def referenced_output_keys(session: AsyncSession, keys: Collection[str]) -> set[str]:
    """Those of ``keys`` that are output files of existing jobs (for storage reconciliation)."""
    owners = {key: job_id_of_output_key(key) for key in keys}
    existing = await JobRepository(session).existing({j for j in owners.values() if j})
    return {key for key, job_id in owners.items() if job_id in existing}
