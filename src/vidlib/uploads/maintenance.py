"""Operator tasks on stored uploads: reconcile storage with the database, import objects.

``reconcile`` decisions:
- Objects under ``uploads/users/`` that no row points at (a video, its thumbnail, or a
  pending upload session) are orphans; ``--fix`` deletes them. Objects younger than
  ``orphan_grace`` are left alone: an upload in progress writes its object a moment
  before its row.
- Live videos whose object is gone are only reported, never changed: the row is the
  only record of what was lost, and a store pointed at the wrong bucket must not be
  able to wipe a library.
- Pending upload sessions past expiry: ``--fix`` aborts their multipart upload,
  deletes whatever they stored and marks them ``expired``.
- Incomplete multipart uploads that no pending session owns and that are older than
  ``multipart_grace`` (a streamed upload in progress owns one for as long as it
  runs) are aborted by ``--fix``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vidlib.auth.models import User
from vidlib.auth.repository import UserRepository
from vidlib.db.base import utcnow
from vidlib.jobs.repository import referenced_output_keys
from vidlib.storage.base import MultipartUploadInfo, ObjectInfo, ObjectStore
from vidlib.tasks.ingest import IngestQueue
from vidlib.uploads.models import UploadStatus
from vidlib.uploads.names import (
    KEY_ROOT,
    filename_of_key,
    original_filename,
    owner_of_key,
    safe_filename,
)
from vidlib.uploads.repository import UploadRepository
from vidlib.uploads.sniff import SNIFF_BYTES, sniff_video
from vidlib.videos.models import Video, VideoStatus
from vidlib.videos.repository import VideoRepository

log = logging.getLogger("vidlib.uploads.maintenance")

BATCH = 500
HEAD_CONCURRENCY = 16
_THUMBNAIL_KEY = re.compile(r"^uploads/users/[^/]+/thumbnails/")
T = TypeVar("T")


@dataclass
class ReconcileReport:
    """What ``reconcile`` found (and, with ``fix``, repaired)."""

    fixed: bool
    orphan_objects: list[str] = field(default_factory=list)
    missing_objects: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    stale_multipart: list[tuple[str, str]] = field(default_factory=list)
    expired_sessions: list[uuid.UUID] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing to report."""
        return not (
            self.orphan_objects
            or self.missing_objects
            or self.stale_multipart
            or self.expired_sessions
        )


async def _batches(items: AsyncIterator[T], size: int) -> AsyncIterator[list[T]]:
    batch: list[T] = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def reconcile(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    *,
    fix: bool = False,
    prefix: str = KEY_ROOT,
    orphan_grace: timedelta = timedelta(hours=1),
    multipart_grace: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> ReconcileReport:
    """Compare storage with the database; with ``fix``, repair what is safe to repair."""
    now = now or utcnow()
    report = ReconcileReport(fixed=fix)
    await expire_sessions(sessionmaker, store, report, now=now)
    await abort_stale_multipart(
        sessionmaker, store, report, prefix=prefix, cutoff=now - multipart_grace
    )
    await _orphans(sessionmaker, store, report, prefix=prefix, cutoff=now - orphan_grace)
    await _missing(sessionmaker, store, report)
    return report


async def expire_sessions(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    report: ReconcileReport,
    *,
    now: datetime,
) -> None:
    """Report (and with ``report.fixed``, abort and mark expired) sessions past expiry."""
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session, session.begin():
            uploads = await UploadRepository(session).expired_pending(now, BATCH, after=after)
            for upload in uploads:
                report.expired_sessions.append(upload.id)
                if not report.fixed:
                    continue
                if upload.storage_upload_id:
                    await store.abort_multipart(upload.s3_key, upload.storage_upload_id)
                await store.delete(upload.s3_key)
                upload.status = UploadStatus.expired.value
        if len(uploads) < BATCH:
            return
        after = uploads[-1].id


async def abort_stale_multipart(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    report: ReconcileReport,
    *,
    prefix: str,
    cutoff: datetime,
) -> None:
    """Report (and with ``report.fixed``, abort) multipart uploads no session owns."""
    batch: list[MultipartUploadInfo]
    async for batch in _batches(store.list_multipart_uploads(prefix), BATCH):
        async with sessionmaker() as session:
            owned = await UploadRepository(session).pending_storage_ids(
                [m.upload_id for m in batch]
            )
        for item in batch:
            if item.upload_id in owned or item.initiated is None or item.initiated > cutoff:
                continue
            report.stale_multipart.append((item.key, item.upload_id))
            if report.fixed:
                await store.abort_multipart(item.key, item.upload_id)


async def _orphans(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    report: ReconcileReport,
    *,
    prefix: str,
    cutoff: datetime,
) -> None:
    batch: list[ObjectInfo]
    async for batch in _batches(store.list(prefix), 1000):
        keys = [o.key for o in batch]
        async with sessionmaker() as session:
            known = await UploadRepository(session).referenced_keys(keys)
            # Job outputs (captions) belong to their job's row, not to a video's.
            known |= await referenced_output_keys(session, keys)
        for info in batch:
            if info.key in known or (info.last_modified and info.last_modified > cutoff):
                continue
            report.orphan_objects.append(info.key)
            if report.fixed:
                await store.delete(info.key)


async def _missing(
    sessionmaker: async_sessionmaker[AsyncSession], store: ObjectStore, report: ReconcileReport
) -> None:
    limit = asyncio.Semaphore(HEAD_CONCURRENCY)

    async def absent(video: Video) -> bool:
        async with limit:
            return await store.head(video.s3_key) is None

    last: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session:
            videos = await VideoRepository(session).live_after(last, BATCH)
        gone = await asyncio.gather(*(absent(v) for v in videos))
        report.missing_objects.extend(
            (v.id, v.s3_key) for v, is_gone in zip(videos, gone, strict=True) if is_gone
        )
        if len(videos) < BATCH:
            return
        last = videos[-1].id


@dataclass
class ImportReport:
    """What ``import_objects`` did."""

    created: list[uuid.UUID] = field(default_factory=list)
    already_registered: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


class UnknownUser(LookupError):
    """``--user`` names no account."""


async def import_objects(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    *,
    prefix: str = KEY_ROOT,
    user_email: str | None = None,
    ingest: IngestQueue | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Register videos already in storage; keys already registered are skipped.

    The owner comes from the key layout ``uploads/users/{user_id}/videos/…`` or, with
    ``user_email``, is that user for every key. Each object is checked (HEAD, then its
    first bytes decide the type); new videos are ``processing`` and queued.
    """
    forced: User | None = None
    if user_email:
        async with sessionmaker() as session:
            forced = await UserRepository(session).get_by_email(user_email)
        if forced is None:
            raise UnknownUser(f"No user has the email {user_email}.")
    report = ImportReport()
    batch: list[ObjectInfo]
    async for batch in _batches(store.list(prefix), BATCH):
        keys = [o.key for o in batch]
        async with sessionmaker() as session:
            known = await UploadRepository(session).referenced_keys(keys)
            # Job outputs (captions) belong to their job's row, not to a video's.
            known |= await referenced_output_keys(session, keys)
            owners = {owner_of_key(o.key) for o in batch} - {None}
            existing_users = set(
                (await session.scalars(select(User.id).where(User.id.in_(owners)))).all()
                if owners
                else ()
            )
        for listed in batch:
            if progress:
                progress(listed.key)
            if listed.key in known:
                report.already_registered += 1
                continue
            if _THUMBNAIL_KEY.match(listed.key):
                report.skipped.append((listed.key, "a thumbnail, not a video"))
                continue
            owner = forced.id if forced else owner_of_key(listed.key)
            if owner is None:
                report.skipped.append((listed.key, "no owner in the key; pass --user"))
                continue
            if owner not in existing_users and forced is None:
                report.skipped.append((listed.key, f"no user with id {owner}"))
                continue
            video_id = await _import_one(sessionmaker, store, listed.key, owner, report)
            if video_id is not None and ingest is not None:
                try:
                    await ingest.enqueue(video_id)
                except Exception:
                    log.warning("could not enqueue video %s", video_id, exc_info=True)
    return report


async def _import_one(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    key: str,
    owner: uuid.UUID,
    report: ImportReport,
) -> uuid.UUID | None:
    info = await store.head(key)
    if info is None:
        report.skipped.append((key, "vanished while importing"))
        return None
    if info.size == 0:
        report.skipped.append((key, "empty"))
        return None
    video_type = sniff_video(await store.get_range(key, 0, SNIFF_BYTES - 1))
    if video_type is None:
        report.skipped.append((key, "not a supported video"))
        return None
    name = filename_of_key(key)
    filename = safe_filename(name, video_type.extension)
    created = info.last_modified or utcnow()
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    video = Video(
        user_id=owner,
        filename=filename,
        original_filename=original_filename(name, filename),
        s3_key=key,
        s3_url=store.object_url(key),
        s3_bucket=store.bucket,
        content_type=video_type.content_type,
        file_size=info.size,
        sha256=None,
        status=VideoStatus.processing.value,
        created_at=created,
        updated_at=created,
    )
    try:
        async with sessionmaker() as session, session.begin():
            await VideoRepository(session).add(video)
    except IntegrityError:
        report.already_registered += 1  # registered concurrently
        return None
    report.created.append(video.id)
    return video.id
