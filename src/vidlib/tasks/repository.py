"""Queries of the ingest bookkeeping: claims, leases, retries and the sweeper's scan."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Result, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from vidlib.tasks.models import VideoIngest
from vidlib.videos.models import Video, VideoStatus


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched."""
    return int(cast(CursorResult[Any], result).rowcount)


def insert_ignoring_conflicts(session: AsyncSession, model: Any, **values: Any) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` for the session's database."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(model).values(**values).on_conflict_do_nothing()


def needs_requeue(model: Any, *, now: datetime, queued_before: datetime) -> ColumnElement[bool]:
    """A claimable row of ``model`` (video_ingest or jobs) that the queue may have lost.

    - a lapsed claim (its worker died), not queued again since it lapsed;
    - a retry that is due, not queued again since it became due;
    - otherwise idle and not queued for ``queued_before`` (a lost or backlogged message).
    Requeuing too often costs only duplicate messages: claims make them no-ops.
    """
    lease, retry_at, queued = model.lease_expires_at, model.next_attempt_at, model.enqueued_at
    stale_queue = or_(queued.is_(None), queued < queued_before)
    return or_(
        and_(lease.is_not(None), lease < now, or_(stale_queue, queued < lease)),
        and_(
            lease.is_(None),
            retry_at.is_not(None),
            retry_at <= now,
            or_(stale_queue, queued < retry_at),
        ),
        and_(lease.is_(None), retry_at.is_(None), stale_queue, model.updated_at < queued_before),
    )


class IngestRepository:
    """Claims on videos to process; every write is fenced by the claimed attempt."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def processing_video(self, video_id: uuid.UUID) -> Video | None:
        """The video if it is live and still waiting for processing."""
        stmt = select(Video).where(
            Video.id == video_id,
            Video.deleted_at.is_(None),
            Video.status == VideoStatus.processing.value,
        )
        return (await self.session.scalars(stmt)).one_or_none()

    async def claim(
        self, video_id: uuid.UUID, *, now: datetime, lease_until: datetime
    ) -> int | None:
        """Take the video for one attempt; the attempt number, or None if it is held
        by a live claim or not due yet."""
        await self.session.execute(
            insert_ignoring_conflicts(
                self.session, VideoIngest, video_id=video_id, attempts=0, updated_at=now
            )
        )
        stmt = (
            update(VideoIngest)
            .where(
                VideoIngest.video_id == video_id,
                or_(VideoIngest.lease_expires_at.is_(None), VideoIngest.lease_expires_at < now),
                or_(VideoIngest.next_attempt_at.is_(None), VideoIngest.next_attempt_at <= now),
            )
            .values(
                attempts=VideoIngest.attempts + 1,
                lease_expires_at=lease_until,
                next_attempt_at=None,
                updated_at=now,
            )
            .returning(VideoIngest.attempts)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    def _fenced(self, video_id: uuid.UUID, attempt: int) -> Any:
        return update(VideoIngest).where(
            VideoIngest.video_id == video_id, VideoIngest.attempts == attempt
        )

    async def renew(
        self, video_id: uuid.UUID, attempt: int, *, now: datetime, lease_until: datetime
    ) -> bool:
        """Extend a claim still held; False once it was lost."""
        stmt = self._fenced(video_id, attempt).values(lease_expires_at=lease_until, updated_at=now)
        result = await self.session.execute(stmt)
        return bool(rowcount(result))

    async def holds(self, video_id: uuid.UUID, attempt: int) -> bool:
        """Whether this attempt still owns the video (lock it for the final write)."""
        stmt = (
            select(VideoIngest.video_id)
            .where(VideoIngest.video_id == video_id, VideoIngest.attempts == attempt)
            .with_for_update()
        )
        return (await self.session.execute(stmt)).first() is not None

    async def release(
        self,
        video_id: uuid.UUID,
        attempt: int,
        *,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """End a claim: done (no retry time) or to be retried at ``next_attempt_at``."""
        stmt = self._fenced(video_id, attempt).values(
            lease_expires_at=None,
            next_attempt_at=next_attempt_at,
            last_error=error[:500] if error else None,
            updated_at=now,
        )
        result = await self.session.execute(stmt)
        return bool(rowcount(result))

    async def due(
        self, *, now: datetime, queued_before: datetime, limit: int
    ) -> Sequence[uuid.UUID]:
        """Live processing videos nobody is working on that should be (re)queued."""
        never_touched = and_(VideoIngest.video_id.is_(None), Video.created_at < queued_before)
        stmt = (
            select(Video.id)
            .outerjoin(VideoIngest, VideoIngest.video_id == Video.id)
            .where(
                Video.status == VideoStatus.processing.value,
                Video.deleted_at.is_(None),
                or_(
                    never_touched,
                    and_(
                        VideoIngest.video_id.is_not(None),
                        needs_requeue(VideoIngest, now=now, queued_before=queued_before),
                    ),
                ),
            )
            .order_by(Video.created_at)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def mark_enqueued(self, video_ids: Sequence[uuid.UUID], *, now: datetime) -> None:
        """Record that these videos were put on the queue."""
        for video_id in video_ids:
            await self.session.execute(
                insert_ignoring_conflicts(
                    self.session, VideoIngest, video_id=video_id, attempts=0, updated_at=now
                )
            )
        await self.session.execute(
            update(VideoIngest)
            .where(VideoIngest.video_id.in_(list(video_ids)))
            .values(enqueued_at=now)
        )
