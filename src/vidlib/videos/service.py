"""Library operations: pages, recent, one video, rename, delete, restore, purge."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vidlib.auth.models import Account
from vidlib.cache import Cache
from vidlib.db.base import utcnow
from vidlib.errors import Conflict, NotFound, Unprocessable
from vidlib.storage.base import ObjectStore
from vidlib.videos.cursor import Cursor, CursorCodec, query_fingerprint, sort_value
from vidlib.videos.models import Video
from vidlib.videos.repository import VideoRepository
from vidlib.videos.schemas import ListParams, VideoListOut, VideoOut, VideoPatch

log = logging.getLogger("vidlib.videos")

CACHE_TTL_SECONDS = 300
# Pages are many and each is superseded by the next write to its library: a shorter
# life keeps the in-process cache small under writes (keys carry the version anyway).
PAGE_TTL_SECONDS = 60


class VideoNotFound(NotFound):
    """404 for a video that is absent, deleted or another user's."""

    message = "Video not found."


class DuplicateVideo(Conflict):
    """409 when restoring would give the user two live copies of the same bytes."""

    message = "An identical video is already in your library; delete it before restoring this one."


@dataclass(frozen=True, slots=True)
class VideoRow:
    """The stored fields a video object is built from (cacheable: no URLs)."""

    id: str
    filename: str
    original_filename: str
    s3_key: str
    content_type: str
    file_size: int
    duration: float | None
    thumbnail_s3_key: str | None
    uploaded_at: str
    metadata: dict[str, Any] | None
    status: str

    @classmethod
    def of(cls, video: Video | Row[Any]) -> VideoRow:
        """Snapshot an ORM row or a listed row (same attribute names)."""
        return cls(
            id=str(video.id),
            filename=video.filename,
            original_filename=video.original_filename,
            s3_key=video.s3_key,
            content_type=video.content_type,
            file_size=video.file_size,
            duration=float(video.duration) if video.duration is not None else None,
            thumbnail_s3_key=video.thumbnail_s3_key,
            uploaded_at=video.created_at.isoformat(),
            metadata=video.media_metadata,
            status=video.status,
        )


@dataclass(frozen=True, slots=True)
class ListedPage:
    """One page of a listing as cached: its rows and the cursor continuing past them."""

    rows: list[VideoRow]
    next_cursor: str | None


_rows_adapter: TypeAdapter[list[VideoRow]] = TypeAdapter(list[VideoRow])
_page_adapter: TypeAdapter[ListedPage] = TypeAdapter(ListedPage)


class VideoPresenter:
    """Turns rows into video objects with playable URLs (signed locally, no network)."""

    def __init__(self, store: ObjectStore, url_ttl_seconds: int) -> None:
        self.store = store
        self.ttl = url_ttl_seconds

    def row(self, row: VideoRow) -> VideoOut:
        """One video object."""
        return VideoOut(
            id=uuid.UUID(row.id),
            filename=row.filename,
            original_filename=row.original_filename,
            s3_key=row.s3_key,
            s3_url=self.store.presign_get(row.s3_key, expires_in=self.ttl),
            content_type=row.content_type,
            file_size=row.file_size,
            duration=row.duration,
            thumbnail_url=(
                self.store.presign_get(row.thumbnail_s3_key, expires_in=self.ttl)
                if row.thumbnail_s3_key
                else None
            ),
            uploaded_at=datetime.fromisoformat(row.uploaded_at),
            metadata=row.metadata,
            status=row.status,
        )

    def video(self, video: Video) -> VideoOut:
        """One video object from an ORM row."""
        return self.row(VideoRow.of(video))


class _Reads:
    """A read session opened only when a cache misses (AUTOCOMMIT: no transaction)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None

    def repo(self) -> VideoRepository:
        if self._session is None:
            self._session = self._sessions()
        return VideoRepository(self._session)

    async def __aenter__(self) -> _Reads:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()


class LibraryReader:
    """Listings (pages and recent) for ``/api/v1/videos``, scoped to one user each.

    Answers from the cache when it can, keyed by the owner's library version (which
    every write bumps), and opens a database session only when it misses: a repeated
    read costs no connection at all. One instance serves the whole app.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        cache: Cache,
        presenter: VideoPresenter,
        cursors: CursorCodec,
    ) -> None:
        self.sessions = sessions
        self.cache = cache
        self.presenter = presenter
        self.cursors = cursors

    async def _count(self, reads: _Reads, user: Account, search: str | None) -> int:
        if not search:
            return user.video_count
        digest = hashlib.sha256(search.encode()).hexdigest()[:24]
        key = f"count:{user.id}:{user.library_version}:{digest}"
        cached = await self.cache.get(key)
        if cached is not None:
            return int(cached)
        total = await reads.repo().count(user_id=user.id, search=search)
        await self.cache.set(key, str(total).encode(), CACHE_TTL_SECONDS)
        return total

    async def list_page(self, user: Account, params: ListParams) -> VideoListOut:
        """A page by number or continuing a cursor; exact totals.

        The page's rows (and the cursor past them) are cached under the owner's
        library version and the whole query, so a repeated request reads no rows
        and any write to the library makes every cached page of it unreachable.
        """
        fingerprint = query_fingerprint(
            user.id, params.search, params.sort_by, params.sort_order, params.page_size
        )
        after: Cursor | None = None
        page = params.page
        if params.cursor:
            after = self.cursors.decode(
                params.cursor, sort_by=params.sort_by, fingerprint=fingerprint
            )
            page = after.page
        position = params.cursor or str(page)
        digest = hashlib.sha256(f"{fingerprint}:{position}".encode()).hexdigest()[:32]
        key = f"page:{user.id}:{user.library_version}:{digest}"
        async with _Reads(self.sessions) as reads:
            listed = await self._cached_page(key)
            if listed is None:
                listed = await self._read_page(reads, user, params, fingerprint, page, after)
                await self.cache.set(key, _page_adapter.dump_json(listed), PAGE_TTL_SECONDS)
            total = await self._count(reads, user, params.search)
        total_pages = math.ceil(total / params.page_size)
        return VideoListOut(
            videos=[self.presenter.row(r) for r in listed.rows],
            total_count=total,
            page=page,
            page_size=params.page_size,
            total_pages=total_pages,
            has_more=page < total_pages,
            next_cursor=listed.next_cursor,
        )

    async def _cached_page(self, key: str) -> ListedPage | None:
        cached = await self.cache.get(key)
        if cached is None:
            return None
        try:
            return _page_adapter.validate_json(cached)
        except ValueError:
            log.warning("discarding unreadable cache entry")
            return None

    async def _read_page(
        self,
        reads: _Reads,
        user: Account,
        params: ListParams,
        fingerprint: str,
        page: int,
        after: Cursor | None,
    ) -> ListedPage:
        rows = await reads.repo().list_page(
            user_id=user.id,
            search=params.search,
            sort_by=params.sort_by,
            descending=params.sort_order == "desc",
            limit=params.page_size + 1,
            offset=0 if after else (page - 1) * params.page_size,
            after=after,
        )
        more_rows = len(rows) > params.page_size
        rows = rows[: params.page_size]
        next_cursor = None
        if more_rows and rows:
            last = rows[-1]
            next_cursor = self.cursors.encode(
                Cursor(
                    value=sort_value(last, params.sort_by),
                    last_id=last.id,
                    page=page + 1,
                    query=fingerprint,
                ),
                params.sort_by,
            )
        return ListedPage(rows=[VideoRow.of(v) for v in rows], next_cursor=next_cursor)

    async def recent(self, user: Account, limit: int) -> list[VideoOut]:
        """The newest ``limit`` videos; cached per library version, so never stale."""
        key = f"recent:{user.id}:{user.library_version}:{limit}"
        cached = await self.cache.get(key)
        if cached is not None:
            try:
                return [self.presenter.row(r) for r in _rows_adapter.validate_json(cached)]
            except ValueError:
                log.warning("discarding unreadable cache entry")
        async with _Reads(self.sessions) as reads:
            videos = await reads.repo().list_page(
                user_id=user.id, search=None, sort_by="created_at", descending=True, limit=limit
            )
        rows = [VideoRow.of(v) for v in videos]
        await self.cache.set(key, _rows_adapter.dump_json(rows), CACHE_TTL_SECONDS)
        return [self.presenter.row(r) for r in rows]


class LibraryService:
    """One video of the caller: read, rename, delete, restore (on the request's session)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = VideoRepository(session)

    async def get(self, user: Account, video_id: uuid.UUID) -> Video:
        """A live video of the user, or 404."""
        video = await self.repo.get_live(user.id, video_id)
        if video is None:
            raise VideoNotFound()
        return video

    async def get_by_key(self, user: Account, s3_key: str) -> Video:
        """A live video of the user by S3 key, or 404."""
        video = await self.repo.get_live_by_key(user.id, s3_key)
        if video is None:
            raise VideoNotFound()
        return video

    async def patch(self, user: Account, video_id: uuid.UUID, body: VideoPatch) -> Video:
        """Rename and/or merge user metadata (a null value removes the key)."""
        video = await self.get(user, video_id)
        values: dict[str, Any] = {}
        if body.filename is not None:
            values["filename"] = body.filename
        if body.metadata is not None:
            merged = dict(video.media_metadata or {})
            for k, v in body.metadata.items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            if len(json.dumps(merged)) > 64 * 1024:
                raise Unprocessable("The metadata is too large.")
            values["media_metadata"] = merged
        if values:
            await self.repo.update_fields(video, **values)
        return video

    async def delete(self, user: Account, video_id: uuid.UUID) -> None:
        """Soft delete: gone from every list at once, restorable until purged."""
        video = await self.get(user, video_id)
        await self.repo.soft_delete(video)

    async def restore(self, user: Account, video_id: uuid.UUID) -> Video:
        """Undo a soft delete (a live video is returned unchanged); 404 once purged."""
        video = await self.repo.get_any(user.id, video_id)
        if video is None:
            raise VideoNotFound()
        if video.deleted_at is None:
            return video
        try:
            async with self.session.begin_nested():
                await self.repo.restore(video)
        except IntegrityError as exc:
            raise DuplicateVideo() from exc
        return video


async def purge_deleted(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    *,
    older_than: timedelta,
    batch_size: int = 100,
) -> int:
    """Delete soft-deleted videos past retention for good: objects, then the row.

    Each video is purged in a transaction that holds its row locked, so a restore
    cannot slip in between; if deleting an object fails, the row stays (still
    deleted) and the next run finishes the job. Never an orphan object.
    """
    cutoff = utcnow() - older_than
    purged = 0
    while True:
        async with sessionmaker() as session:
            ids = [v.id for v in await VideoRepository(session).deleted_before(cutoff, batch_size)]
        for video_id in ids:
            async with sessionmaker() as session, session.begin():
                repo = VideoRepository(session)
                video = await repo.lock_deleted_before(video_id, cutoff)
                if video is None:
                    continue
                await store.delete(video.s3_key)
                if video.thumbnail_s3_key:
                    await store.delete(video.thumbnail_s3_key)
                await repo.purge(video_id)
                purged += 1
        if len(ids) < batch_size:
            return purged
