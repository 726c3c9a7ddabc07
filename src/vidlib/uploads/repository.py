"""Every query on the ``uploads`` and ``transcripts`` tables (and the key checks on videos)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from vidlib.uploads.models import Transcript, Upload, UploadStatus
from vidlib.videos.models import Video


class UploadRepository:
    """Upload sessions; reads are scoped to an owner where a client asks."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, upload: Upload) -> Upload:
        """Insert an upload row (flush only)."""
        self.session.add(upload)
        await self.session.flush()
        return upload

    async def get_owned(
        self, user_id: uuid.UUID, upload_id: uuid.UUID, *, for_update: bool = False
    ) -> Upload | None:
        """One of the user's uploads; optionally locked against a concurrent change."""
        stmt = select(Upload).where(Upload.id == upload_id, Upload.user_id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).one_or_none()

    async def key_in_use(self, key: str) -> bool:
        """Whether a video (live or deleted) or a pending upload session holds ``key``."""
        stmt = union_all(
            select(Video.id).where(Video.s3_key == key),
            select(Upload.id).where(
                Upload.s3_key == key, Upload.status == UploadStatus.pending.value
            ),
        ).limit(1)
        return (await self.session.execute(stmt)).first() is not None

    async def referenced_keys(self, keys: Collection[str]) -> set[str]:
        """Those of ``keys`` a row points at: a video or thumbnail, or a pending session."""
        if not keys:
            return set()
        key_list = list(keys)
        found: set[str] = set()
        videos = select(Video.s3_key, Video.thumbnail_s3_key).where(
            or_(Video.s3_key.in_(key_list), Video.thumbnail_s3_key.in_(key_list))
        )
        for s3_key, thumb in (await self.session.execute(videos)).all():
            found.add(s3_key)
            if thumb:
                found.add(thumb)
        pending = select(Upload.s3_key).where(
            Upload.s3_key.in_(key_list), Upload.status == UploadStatus.pending.value
        )
        found.update((await self.session.scalars(pending)).all())
        return found & set(key_list)

    async def pending_storage_ids(self, storage_upload_ids: Collection[str]) -> dict[str, Upload]:
        """Pending sessions by the storage's multipart upload id."""
        if not storage_upload_ids:
            return {}
        stmt = select(Upload).where(
            Upload.storage_upload_id.in_(list(storage_upload_ids)),
            Upload.status == UploadStatus.pending.value,
        )
        return {
            u.storage_upload_id: u
            for u in (await self.session.scalars(stmt)).all()
            if u.storage_upload_id
        }

    async def expired_pending(
        self, now: datetime, limit: int, *, after: uuid.UUID | None = None
    ) -> Sequence[Upload]:
        """Pending sessions past their expiry, in id order after ``after`` (keyset walk)."""
        stmt = select(Upload).where(
            Upload.status == UploadStatus.pending.value, Upload.expires_at < now
        )
        if after is not None:
            stmt = stmt.where(Upload.id > after)
        return (await self.session.scalars(stmt.order_by(Upload.id).limit(limit))).all()


class TranscriptRepository:
    """Transcripts; every read is scoped to an owner."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, transcript: Transcript) -> Transcript:
        """Insert a transcript (flush only)."""
        self.session.add(transcript)
        await self.session.flush()
        return transcript

    async def get_owned(self, user_id: uuid.UUID, transcript_id: uuid.UUID) -> Transcript | None:
        """One of the user's transcripts."""
        stmt = select(Transcript).where(
            Transcript.id == transcript_id, Transcript.user_id == user_id
        )
        return (await self.session.scalars(stmt)).one_or_none()
