"""Every query on the ``videos`` table."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from vidlib.auth.models import User
from vidlib.db.base import utcnow
from vidlib.db.session import account_changed
from vidlib.videos.cursor import Cursor, sort_key
from vidlib.videos.models import Video


def escape_like(term: str) -> str:
    """Make ``%``, ``_`` and the escape character itself literal in a LIKE pattern."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# What a video object is built from, fetched as plain rows under the ORM attribute
# names (no identity map, no instances: the listing's hot path).
LISTED = (
    Video.id.label("id"),
    Video.filename.label("filename"),
    Video.original_filename.label("original_filename"),
    Video.s3_key.label("s3_key"),
    Video.content_type.label("content_type"),
    Video.file_size.label("file_size"),
    Video.duration.label("duration"),
    Video.thumbnail_s3_key.label("thumbnail_s3_key"),
    Video.created_at.label("created_at"),
    Video.media_metadata.label("media_metadata"),
    Video.status.label("status"),
)


class VideoRepository:
    """Queries on one session; every read is scoped to an owner."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _live(user_id: uuid.UUID) -> list[ColumnElement[bool]]:
        return [Video.user_id == user_id, Video.deleted_at.is_(None)]

    @staticmethod
    def _search(term: str) -> ColumnElement[bool]:
        pattern = f"%{escape_like(term)}%"
        return or_(
            Video.filename.ilike(pattern, escape="\\"),
            Video.original_filename.ilike(pattern, escape="\\"),
        )

    def _filtered(self, user_id: uuid.UUID, search: str | None) -> list[ColumnElement[bool]]:
        where = self._live(user_id)
        if search:
            where.append(self._search(search))
        return where

    async def list_page(
        self,
        *,
        user_id: uuid.UUID,
        search: str | None,
        sort_by: str,
        descending: bool,
        limit: int,
        offset: int = 0,
        after: Cursor | None = None,
    ) -> Sequence[Row[Any]]:
        """Up to ``limit`` live videos in a total order (sort key, then id), as rows with
        the :data:`LISTED` fields.

        With ``after`` the page starts past that position (keyset: cost independent
        of depth); otherwise ``offset`` rows are skipped through the index first and
        only the page's rows are fetched.
        """
        key = sort_key(sort_by)
        where = self._filtered(user_id, search)
        if after is not None:
            position = tuple_(key, Video.id)
            bound = tuple_(_typed(key, after.value), _typed(Video.id, after.last_id))
            where.append(position < bound if descending else position > bound)
        order = (key.desc(), Video.id.desc()) if descending else (key.asc(), Video.id.asc())
        if offset:
            # Deferred join: walk the index for ids only, then load just the page.
            ids = (
                select(Video.id).where(*where).order_by(*order).offset(offset).limit(limit)
            ).subquery()
            stmt: Select[Any] = select(*LISTED).join(ids, Video.id == ids.c.id).order_by(*order)
        else:
            stmt = select(*LISTED).where(*where).order_by(*order).limit(limit)
        conn = await self.session.connection()
        rows: Sequence[Row[Any]] = (await conn.execute(stmt)).all()
        return rows

    async def count(self, *, user_id: uuid.UUID, search: str | None) -> int:
        """Live videos matching ``search``."""
        stmt = select(func.count()).select_from(Video).where(*self._filtered(user_id, search))
        return int((await self.session.execute(stmt)).scalar_one())

    async def get_live(self, user_id: uuid.UUID, video_id: uuid.UUID) -> Video | None:
        """One of the user's live videos by id."""
        stmt = select(Video).where(Video.id == video_id, *self._live(user_id))
        return (await self.session.scalars(stmt)).one_or_none()

    async def get_live_by_key(self, user_id: uuid.UUID, s3_key: str) -> Video | None:
        """One of the user's live videos by S3 key."""
        stmt = select(Video).where(Video.s3_key == s3_key, *self._live(user_id))
        return (await self.session.scalars(stmt)).one_or_none()

    async def live_after(self, last_id: uuid.UUID | None, limit: int) -> Sequence[Video]:
        """Live videos of every user in id order, after ``last_id`` (maintenance walk)."""
        stmt = select(Video).where(Video.deleted_at.is_(None))
        if last_id is not None:
            stmt = stmt.where(Video.id > last_id)
        return (await self.session.scalars(stmt.order_by(Video.id).limit(limit))).all()

    async def get_any(self, user_id: uuid.UUID, video_id: uuid.UUID) -> Video | None:
        """One of the user's videos by id, deleted or not (for restore)."""
        stmt = select(Video).where(Video.id == video_id, Video.user_id == user_id)
        return (await self.session.scalars(stmt)).one_or_none()

    async def get_live_by_sha256(self, user_id: uuid.UUID, sha256: str) -> Video | None:
        """The user's live video with these bytes, if any (dedupe)."""
        stmt = select(Video).where(Video.sha256 == sha256, *self._live(user_id))
        return (await self.session.scalars(stmt)).one_or_none()

    async def add(self, video: Video) -> Video:
        """Insert a live video and count it in the owner's library."""
        self.session.add(video)
        await self.session.flush()
        await self.touch_library(video.user_id, count_delta=1)
        return video

    async def add_many(self, videos: Sequence[Video]) -> None:
        """Insert several live videos of one user in one statement batch."""
        if not videos:
            return
        owners = {v.user_id for v in videos}
        if len(owners) != 1:
            raise ValueError("add_many takes videos of a single user")
        self.session.add_all(videos)
        await self.session.flush()
        await self.touch_library(owners.pop(), count_delta=len(videos))

    async def touch_library(self, user_id: uuid.UUID, *, count_delta: int = 0) -> None:
        """Record a change to the owner's library: adjust its count, bump its version."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(
                video_count=User.video_count + count_delta,
                library_version=User.library_version + 1,
            )
            .execution_options(synchronize_session=False)
        )
        account_changed(self.session, user_id)

    async def soft_delete(self, video: Video, *, when: datetime | None = None) -> None:
        """Hide a video from every read; it can be restored until purged."""
        video.deleted_at = when or utcnow()
        await self.session.flush()
        await self.touch_library(video.user_id, count_delta=-1)

    async def restore(self, video: Video) -> None:
        """Bring a soft-deleted video back."""
        video.deleted_at = None
        await self.session.flush()
        await self.touch_library(video.user_id, count_delta=1)

    async def update_fields(self, video: Video, **values: Any) -> None:
        """Change a live video's fields and mark its owner's library changed."""
        for name, value in values.items():
            setattr(video, name, value)
        video.updated_at = utcnow()
        await self.session.flush()
        await self.touch_library(video.user_id)

    async def deleted_before(self, cutoff: datetime, limit: int) -> Sequence[Video]:
        """Soft-deleted videos past retention, oldest first."""
        stmt = (
            select(Video)
            .where(Video.deleted_at.is_not(None), Video.deleted_at < cutoff)
            .order_by(Video.deleted_at)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def lock_deleted_before(self, video_id: uuid.UUID, cutoff: datetime) -> Video | None:
        """A soft-deleted video still past retention, locked against a concurrent restore."""
        stmt = (
            select(Video)
            .where(Video.id == video_id, Video.deleted_at.is_not(None), Video.deleted_at < cutoff)
            .with_for_update()
        )
        return (await self.session.scalars(stmt)).one_or_none()

    async def purge(self, video_id: uuid.UUID) -> bool:
        """Delete a soft-deleted row for good (its objects are already gone)."""
        result = await self.session.execute(
            delete(Video).where(and_(Video.id == video_id, Video.deleted_at.is_not(None)))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _typed(column: Any, value: Any) -> Any:
    """A bound parameter carrying the column's type (UTC handling, UUIDs)."""
    return literal(value, type_=column.type)
