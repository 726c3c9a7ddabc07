"""Uploads: streamed through the API, direct to storage (presigned), and transcripts.

Consistency rule: an upload that fails leaves no row and no object. Storage is
written first, rows second. Every flow that writes storage before its rows commits
those rows in its own transaction (from the sessionmaker, not the request's
session), so it knows whether the commit happened and can compensate — delete
the object, abort the multipart upload — when it did not, commit failures
included. The request's session is used only to authenticate the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vidlib.config import Settings
from vidlib.db.base import utcnow
from vidlib.errors import Unprocessable
from vidlib.storage.base import (
    DEFAULT_PART_SIZE,
    MAX_PARTS,
    MIB,
    MIN_PART_SIZE,
    InvalidPart,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
)
from vidlib.tasks.ingest import IngestQueue
from vidlib.uploads.concurrency import ensure_direct_session_room, lock_direct_sessions
from vidlib.uploads.errors import (
    UnsupportedMedia,
    UploadConflict,
    UploadExpired,
    UploadNotFound,
    UploadTooLarge,
)
from vidlib.uploads.models import (
    Transcript,
    Upload,
    UploadMethod,
    UploadStatus,
)
from vidlib.uploads.names import original_filename, safe_filename, video_key
from vidlib.uploads.repository import TranscriptRepository, UploadRepository
from vidlib.uploads.schemas import (
    DirectMultipartOut,
    DirectPutOut,
    DirectUploadIn,
    DirectUploadStateOut,
    PartIn,
    PartStateOut,
    PartUrlOut,
    PartUrlsOut,
)
from vidlib.uploads.sniff import ACCEPTED_TYPES, SNIFF_BYTES, VideoType, sniff_video
from vidlib.uploads.streaming import (
    BLOCK_SIZE,
    Event,
    PartData,
    PartStart,
    StoreFeed,
    file_events,
    multipart_events,
    run_shielded,
)
from vidlib.uploads.transcripts import MAX_TRANSCRIPT_BYTES, InvalidTranscript, parse_transcript
from vidlib.videos.models import Video, VideoStatus
from vidlib.videos.repository import VideoRepository

log = logging.getLogger("vidlib.uploads")

# Multipart framing around the file (boundaries, part headers, small fields): a body
# announcing more than the limit plus this is refused before a byte is read.
FORM_OVERHEAD = 64 * 1024
ACCEPTED_NAMES = "MP4, MOV, M4V, WebM or MKV"

# Keys chosen by uploads still in progress in this process: two uploads of the same
# name in the same second get ``…_2``. Storage's never-overwrite rule and the
# database's unique ``s3_key`` keep other processes honest.
_claimed_keys: set[str] = set()


def _size_text(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def not_a_video() -> UnsupportedMedia:
    """415 for content that is not an accepted video container."""
    return UnsupportedMedia(f"The file is not a supported video; send {ACCEPTED_NAMES}.")


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    """Sizes and lifetimes of uploads."""

    max_bytes: int
    # Part size of streamed uploads (raised when the limit needs more than 10,000 parts).
    stream_part_size: int = DEFAULT_PART_SIZE
    # Direct uploads up to this size use one presigned PUT; larger ones use multipart.
    single_put_limit: int = 64 * MIB
    # Smallest part of a direct multipart upload.
    direct_part_size: int = DEFAULT_PART_SIZE
    # Part URLs issued with a new multipart session; ``/parts`` gives the rest.
    first_part_urls: int = 100
    # How long a direct session (and every URL it hands out) stays valid.
    session_ttl: timedelta = timedelta(hours=24)
    # Direct sessions a user may have open (neither completed, aborted nor expired).
    direct_sessions_per_user: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadPolicy:
        """The policy for a deployment's configured limits."""
        return cls(
            max_bytes=settings.max_upload_bytes,
            direct_sessions_per_user=settings.direct_upload_sessions_per_user,
        )

    def part_size_for(self, size: int, floor: int) -> int:
        """A part size ≥ ``floor`` (and S3's 5 MiB) that fits ``size`` in 10,000 parts."""
        needed = math.ceil(size / MAX_PARTS / MIB) * MIB
        return max(floor, MIN_PART_SIZE, needed)

    @property
    def stream_parts(self) -> int:
        """Part size for streamed uploads."""
        return self.part_size_for(self.max_bytes, self.stream_part_size)


@dataclass(slots=True)
class UploadResult:
    """A video that entered the library through an upload (or the one it duplicates)."""

    upload_id: uuid.UUID
    video: Video
    deduplicated: bool


@dataclass(slots=True)
class _Stored:
    """A streamed file now in storage, not yet in the database."""

    key: str
    filename: str
    original_filename: str
    video_type: VideoType
    info: ObjectInfo
    sha256: str


@dataclass(slots=True)
class _FileReceiver:
    """Reads the ``file`` part of a multipart body into storage: sniff, limit, hash."""

    service: UploadService
    user_id: uuid.UUID
    timestamp: int
    client_name: str | None = None
    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    block: bytearray = field(default_factory=bytearray)
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    video_type: VideoType | None = None
    key: str | None = None
    filename: str | None = None
    suffix: int = 1
    feed: StoreFeed | None = None
    writer: asyncio.Task[ObjectInfo] | None = None

    async def receive(self, events: AsyncIterator[Event]) -> _Stored:
        """Consume the body; the file is in storage when this returns."""
        async for event in file_events(events):
            if isinstance(event, PartStart):
                self.client_name = event.filename
            elif isinstance(event, PartData):
                await self._data(event.data)
            else:
                await self._file_end()
        info = await self._finish()
        assert self.key
        assert self.filename
        assert self.video_type
        return _Stored(
            key=self.key,
            filename=self.filename,
            original_filename=original_filename(self.client_name, self.filename),
            video_type=self.video_type,
            info=info,
            sha256=self.hasher.hexdigest(),
        )

    async def _data(self, data: bytes) -> None:
        self.size += len(data)
        limit = self.service.policy.max_bytes
        if self.size > limit:
            raise UploadTooLarge(f"The file is larger than the {_size_text(limit)} limit.")
        if self.feed is None:
            self.head += data
            if len(self.head) >= SNIFF_BYTES:
                await self._start()
            return
        self.block += data
        if len(self.block) >= BLOCK_SIZE:
            await self._flush()

    async def _file_end(self) -> None:
        if self.feed is None:
            if self.size == 0:
                raise Unprocessable("The file is empty.")
            await self._start()
        await self._flush()
        await self._send(None)

    async def _start(self) -> None:
        """Sniff the first bytes, choose the key, start the storage writer."""
        video_type = sniff_video(bytes(self.head[:SNIFF_BYTES]))
        if video_type is None:
            raise not_a_video()
        self.video_type = video_type
        await self._claim_key()
        self.feed = StoreFeed()
        self._start_writer()
        self.block, self.head = self.head, bytearray()
        if len(self.block) >= BLOCK_SIZE:
            await self._flush()

    async def _claim_key(self) -> None:
        assert self.video_type is not None
        self.key, self.filename, self.suffix = await self.service.claim_key(
            self.user_id,
            self.timestamp,
            self.client_name,
            self.video_type.extension,
            first_suffix=self.suffix,
        )

    def _start_writer(self) -> None:
        assert self.feed is not None
        assert self.key
        assert self.video_type
        self.writer = self.feed.run(
            self.service.store.put_stream(
                self.key,
                self.feed.chunks(),
                content_type=self.video_type.content_type,
                part_size=self.service.policy.stream_parts,
            )
        )

    async def _switch_key(self) -> None:
        """The key was taken in storage before any byte was written: take the next name."""
        assert self.feed is not None
        assert not self.feed.started
        if self.key:
            _claimed_keys.discard(self.key)
        self.suffix += 1
        await self._claim_key()
        self._start_writer()

    async def _flush(self) -> None:
        if not self.block:
            return
        block = bytes(self.block)
        self.block.clear()
        # hashlib releases the GIL on large buffers: hash off the event loop.
        await asyncio.to_thread(self.hasher.update, block)
        await self._send(block)

    async def _send(self, block: bytes | None) -> None:
        assert self.feed is not None
        while True:
            try:
                await self.feed.send(block)
                return
            except ObjectExists as exc:
                if self.feed.started:
                    raise _key_race() from exc
                await self._switch_key()

    async def _finish(self) -> ObjectInfo:
        assert self.feed is not None
        assert self.writer is not None
        while True:
            try:
                info = await self.writer
                break
            except ObjectExists as exc:
                if self.feed.started:
                    raise _key_race() from exc
                await self._switch_key()
        if info.size != self.size:
            raise RuntimeError(f"storage holds {info.size} bytes of {self.size} sent")
        return info

    async def discard(self) -> None:
        """Leave nothing behind: stop the writer, or delete what it wrote."""
        writer, feed, key = self.writer, self.feed, self.key
        if writer is None or feed is None or key is None:
            return
        if not writer.done():
            await feed.stop()  # put_stream aborts its multipart upload
            return
        if not writer.cancelled() and writer.exception() is None:
            store = self.service.store
            await run_shielded(lambda: store.delete(key), f"delete {key}")


def _key_race() -> UploadConflict:
    return UploadConflict(
        "Another upload of a file with this name is being stored right now; please retry."
    )


class UploadService:
    """Video uploads of one user at a time; writes commit in their own transactions."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        policy: UploadPolicy,
        ingest: IngestQueue | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.policy = policy
        self.ingest = ingest
        self.clock = clock

    # -- keys ---------------------------------------------------------------------

    async def claim_key(
        self,
        user_id: uuid.UUID,
        timestamp: int,
        client_name: str | None,
        extension: str,
        *,
        first_suffix: int = 1,
    ) -> tuple[str, str, int]:
        """A key no object, row, session or upload in progress here holds; reserved.

        Returns (key, safe filename, suffix number). Release with ``release_key``.
        """
        for n in range(first_suffix, first_suffix + 50):
            filename = safe_filename(client_name, extension, suffix="" if n == 1 else f"_{n}")
            key = video_key(user_id, timestamp, filename)
            if key in _claimed_keys:
                continue
            _claimed_keys.add(key)
            try:
                async with self.sessionmaker() as session:
                    taken = await UploadRepository(session).key_in_use(key)
                if not taken and await self.store.head(key) is None:
                    return key, filename, n
            except BaseException:
                _claimed_keys.discard(key)
                raise
            _claimed_keys.discard(key)
        raise _key_race()

    @staticmethod
    def release_key(key: str | None) -> None:
        """Forget an in-process key reservation."""
        if key:
            _claimed_keys.discard(key)

    # -- streamed uploads ---------------------------------------------------------

    async def upload_stream(
        self,
        *,
        user_id: uuid.UUID,
        body: AsyncIterator[bytes],
        content_type: str | None,
        content_length: int | None = None,
    ) -> UploadResult:
        """Stream a multipart body's ``file`` into storage, then register the video."""
        if content_length is not None and content_length > self.policy.max_bytes + FORM_OVERHEAD:
            raise UploadTooLarge(
                f"The file is larger than the {_size_text(self.policy.max_bytes)} limit."
            )
        receiver = _FileReceiver(self, user_id, int(self.clock().timestamp()))
        try:
            try:
                stored = await receiver.receive(multipart_events(body, content_type))
            except BaseException:
                await receiver.discard()
                raise
            try:
                result = await self._register_streamed(user_id, stored)
            except BaseException:
                await run_shielded(lambda: self.store.delete(stored.key), f"delete {stored.key}")
                raise
        finally:
            self.release_key(receiver.key)
        if not result.deduplicated:
            await self._enqueue(result.video.id)
        return result

    async def _register_streamed(self, user_id: uuid.UUID, stored: _Stored) -> UploadResult:
        """Insert the video and its upload row, or point at the user's identical video."""
        for attempt in (1, 2):
            try:
                async with self.sessionmaker() as session, session.begin():
                    videos = VideoRepository(session)
                    now = self.clock()
                    existing = await videos.get_live_by_sha256(user_id, stored.sha256)
                    if existing is None:
                        video = await videos.add(
                            Video(
                                user_id=user_id,
                                filename=stored.filename,
                                original_filename=stored.original_filename,
                                s3_key=stored.key,
                                s3_url=self.store.object_url(stored.key),
                                s3_bucket=self.store.bucket,
                                content_type=stored.video_type.content_type,
                                file_size=stored.info.size,
                                sha256=stored.sha256,
                                status=VideoStatus.processing.value,
                                created_at=now,
                                updated_at=now,
                            )
                        )
                    else:
                        video = existing
                    upload = await UploadRepository(session).add(
                        Upload(
                            user_id=user_id,
                            method=UploadMethod.stream.value,
                            status=UploadStatus.completed.value,
                            s3_key=stored.key,
                            filename=stored.filename,
                            original_filename=stored.original_filename,
                            content_type=stored.video_type.content_type,
                            file_size=stored.info.size,
                            sha256=stored.sha256,
                            video_id=video.id,
                            completed_at=now,
                        )
                    )
                    if existing is not None:
                        # Before the commit: a success never leaves a second copy.
                        await self.store.delete(stored.key)
                return UploadResult(upload.id, video, deduplicated=existing is not None)
            except IntegrityError:
                # A concurrent upload of the same bytes committed first (the unique
                # (user, sha256) index): the next attempt finds it and deduplicates.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _enqueue(self, video_id: uuid.UUID) -> None:
        """Hand a committed video to processing; a failure here must not fail the upload."""
        if self.ingest is None:
            return
        try:
            await self.ingest.enqueue(video_id)
        except Exception:
            log.warning("could not enqueue video %s for processing", video_id, exc_info=True)

    # -- direct uploads -----------------------------------------------------------

    async def create_direct(
        self, *, user_id: uuid.UUID, body: DirectUploadIn
    ) -> DirectPutOut | DirectMultipartOut | UploadResult:
        """Open a direct upload session (or return the user's identical video)."""
        video_type = ACCEPTED_TYPES.get(body.content_type)
        if video_type is None:
            raise UnsupportedMedia(
                f"content_type must be a supported video type: {', '.join(ACCEPTED_TYPES)}."
            )
        if body.file_size > self.policy.max_bytes:
            raise UploadTooLarge(
                f"The file is larger than the {_size_text(self.policy.max_bytes)} limit."
            )
        now = self.clock()
        timestamp = int(now.timestamp())
        multipart = body.file_size > self.policy.single_put_limit
        method = UploadMethod.multipart if multipart else UploadMethod.put
        if body.sha256:
            deduped = await self._dedupe_direct(user_id, body, video_type, method, timestamp)
            if deduped is not None:
                return deduped
        # Refused before anything is created in storage; checked again, serialised,
        # when the session is inserted.
        async with self.sessionmaker() as session:
            await self._ensure_session_room(session, user_id)
        key, filename, _ = await self.claim_key(
            user_id, timestamp, body.filename, video_type.extension
        )
        try:
            expires_at = now + self.policy.session_ttl
            upload = Upload(
                user_id=user_id,
                method=method.value,
                status=UploadStatus.pending.value,
                s3_key=key,
                filename=filename,
                original_filename=original_filename(body.filename, filename),
                content_type=video_type.content_type,
                file_size=body.file_size,
                sha256=body.sha256,  # the client's claim, unverified: never put on the video
                expires_at=expires_at,
            )
            ttl = self._ttl(expires_at)
            if not multipart:
                request = self.store.presign_put(
                    key,
                    content_type=video_type.content_type,
                    content_length=body.file_size,
                    expires_in=ttl,
                )
                await self._commit_new(upload)
                return DirectPutOut(
                    upload_id=upload.id,
                    url=request.url,
                    headers=request.headers,
                    expires_at=expires_at,
                )
            upload.part_size = self.policy.part_size_for(
                body.file_size, self.policy.direct_part_size
            )
            storage_id = await self.store.create_multipart(
                key, content_type=video_type.content_type
            )
            upload.storage_upload_id = storage_id
            try:
                await self._commit_new(upload)
            except BaseException:
                store = self.store
                await run_shielded(
                    lambda: store.abort_multipart(key, storage_id), f"abort upload of {key}"
                )
                raise
            count = _part_count(upload)
            first = range(1, min(count, self.policy.first_part_urls) + 1)
            return DirectMultipartOut(
                upload_id=upload.id,
                part_size=upload.part_size,
                part_count=count,
                parts=[self._part_url(upload, n, ttl) for n in first],
                expires_at=expires_at,
            )
        finally:
            self.release_key(key)

    async def _commit_new(self, upload: Upload) -> None:
        async with self.sessionmaker() as session, session.begin():
            await lock_direct_sessions(session, upload.user_id)
            await UploadRepository(session).add(upload)
            await self._ensure_session_room(session, upload.user_id, inserted=True)

    async def _ensure_session_room(
        self, session: AsyncSession, user_id: uuid.UUID, *, inserted: bool = False
    ) -> None:
        """429 when the user already has as many open direct sessions as allowed."""
        await ensure_direct_session_room(
            session,
            user_id,
            now=self.clock(),
            lifetime=self.policy.session_ttl,
            limit=self.policy.direct_sessions_per_user,
            inserted=inserted,
        )

    async def _dedupe_direct(
        self,
        user_id: uuid.UUID,
        body: DirectUploadIn,
        video_type: VideoType,
        method: UploadMethod,
        timestamp: int,
    ) -> UploadResult | None:
        """The user's live video with the claimed bytes, recorded as a completed upload.

        Trusting the claim is safe: it can only ever return the caller's own video.
        """
        assert body.sha256
        async with self.sessionmaker() as session, session.begin():
            existing = await VideoRepository(session).get_live_by_sha256(user_id, body.sha256)
            if existing is None:
                return None
            filename = safe_filename(body.filename, video_type.extension)
            upload = await UploadRepository(session).add(
                Upload(
                    user_id=user_id,
                    method=method.value,
                    status=UploadStatus.completed.value,
                    # Where the bytes would have gone; differs from the video's key,
                    # which is how a repeated /complete knows this was deduplicated.
                    s3_key=video_key(user_id, timestamp, filename),
                    filename=filename,
                    original_filename=original_filename(body.filename, filename),
                    content_type=video_type.content_type,
                    file_size=body.file_size,
                    sha256=body.sha256,
                    video_id=existing.id,
                    completed_at=self.clock(),
                )
            )
            return UploadResult(upload.id, existing, deduplicated=True)

    def _ttl(self, expires_at: datetime) -> int:
        return max(1, int((expires_at - self.clock()).total_seconds()))

    def _part_url(self, upload: Upload, number: int, ttl: int) -> PartUrlOut:
        assert upload.storage_upload_id
        url = self.store.presign_part(
            upload.s3_key, upload.storage_upload_id, number, expires_in=ttl
        )
        return PartUrlOut(part_number=number, url=url)

    async def _owned_direct(
        self, session: AsyncSession, user_id: uuid.UUID, upload_id: uuid.UUID, *, lock: bool
    ) -> Upload:
        upload = await UploadRepository(session).get_owned(user_id, upload_id, for_update=lock)
        if upload is None or upload.method == UploadMethod.stream.value:
            raise UploadNotFound()
        return upload

    def _status(self, upload: Upload) -> UploadStatus:
        """The session's status as a client sees it (pending past expiry is expired)."""
        status = UploadStatus(upload.status)
        if (
            status is UploadStatus.pending
            and upload.expires_at is not None
            and upload.expires_at <= self.clock()
        ):
            return UploadStatus.expired
        return status

    async def direct_state(
        self, *, user_id: uuid.UUID, upload_id: uuid.UUID
    ) -> DirectUploadStateOut:
        """What storage holds for a session, so a restarted client can resume."""
        async with self.sessionmaker() as session:
            upload = await self._owned_direct(session, user_id, upload_id, lock=False)
        status = self._status(upload)
        parts: list[PartStateOut] = []
        if status is UploadStatus.pending:
            if upload.method == UploadMethod.multipart.value:
                assert upload.storage_upload_id
                try:
                    held = await self.store.list_parts(upload.s3_key, upload.storage_upload_id)
                except ObjectNotFound:
                    held = []
                parts = [
                    PartStateOut(part_number=p.part_number, size=p.size, etag=p.etag) for p in held
                ]
            else:
                info = await self.store.head(upload.s3_key)
                if info is not None:
                    parts = [PartStateOut(part_number=1, size=info.size, etag=info.etag)]
        return DirectUploadStateOut(
            upload_id=upload.id,
            status=status.value,
            method="multipart" if upload.method == UploadMethod.multipart.value else "PUT",
            filename=upload.filename,
            content_type=upload.content_type,
            file_size=upload.file_size,
            part_size=upload.part_size,
            part_count=_part_count(upload),
            expires_at=upload.expires_at,
            parts=parts,
            video_id=upload.video_id,
        )

    def _require_pending(self, upload: Upload) -> None:
        status = self._status(upload)
        if status is UploadStatus.expired:
            raise UploadExpired()
        if status is UploadStatus.aborted:
            raise UploadConflict("This upload was aborted; start a new one.")
        if status is UploadStatus.completed:
            raise UploadConflict("This upload is already complete.")

    async def part_urls(
        self, *, user_id: uuid.UUID, upload_id: uuid.UUID, part_numbers: Sequence[int]
    ) -> PartUrlsOut:
        """Fresh URLs for some parts of a pending multipart session."""
        async with self.sessionmaker() as session:
            upload = await self._owned_direct(session, user_id, upload_id, lock=False)
        if upload.method != UploadMethod.multipart.value:
            raise UploadConflict("This upload is a single PUT; it has no parts.")
        self._require_pending(upload)
        count = _part_count(upload)
        invalid = sorted({n for n in part_numbers if not 1 <= n <= count})
        if invalid:
            raise Unprocessable(
                f"Part numbers must be between 1 and {count}; got {_numbers(invalid)}."
            )
        assert upload.expires_at is not None
        ttl = self._ttl(upload.expires_at)
        return PartUrlsOut(
            parts=[self._part_url(upload, n, ttl) for n in sorted(set(part_numbers))],
            expires_at=upload.expires_at,
        )

    async def abort_direct(self, *, user_id: uuid.UUID, upload_id: uuid.UUID) -> None:
        """Abort a session: storage keeps nothing of it (repeating is harmless)."""
        async with self.sessionmaker() as session, session.begin():
            upload = await self._owned_direct(session, user_id, upload_id, lock=True)
            if upload.status == UploadStatus.completed.value:
                raise UploadConflict(
                    "This upload is complete; delete the video to remove it from your library."
                )
            if upload.status != UploadStatus.pending.value:
                return
            await self._discard_session_storage(upload)
            upload.status = UploadStatus.aborted.value

    async def _discard_session_storage(self, upload: Upload) -> None:
        """Remove whatever a pending session put in storage."""
        if upload.storage_upload_id:
            await self.store.abort_multipart(upload.s3_key, upload.storage_upload_id)
        await self.store.delete(upload.s3_key)

    async def complete_direct(
        self, *, user_id: uuid.UUID, upload_id: uuid.UUID, parts: Sequence[PartIn] | None
    ) -> UploadResult:
        """Check what storage holds, then add the video; repeating returns the same result."""
        try:
            result, rejection = await self._complete(user_id, upload_id, parts)
        except IntegrityError:
            # A concurrent /complete of the same session inserted the video first.
            result, rejection = await self._complete(user_id, upload_id, parts)
        if rejection is not None:
            raise rejection
        assert result is not None
        return result

    async def _complete(
        self, user_id: uuid.UUID, upload_id: uuid.UUID, parts: Sequence[PartIn] | None
    ) -> tuple[UploadResult | None, Exception | None]:
        fresh = False
        async with self.sessionmaker() as session, session.begin():
            upload = await self._owned_direct(session, user_id, upload_id, lock=True)
            videos = VideoRepository(session)
            if upload.status == UploadStatus.completed.value:
                return await self._completed_result(videos, upload), None
            self._require_pending(upload)
            info = await self._assemble(upload, parts)
            if info.size != upload.file_size:
                # Storage will not let the client overwrite the key: clear it so the
                # PUT can be repeated (a multipart session cannot be, so it ends).
                await self.store.delete(upload.s3_key)
                if upload.method == UploadMethod.multipart.value:
                    upload.status = UploadStatus.aborted.value
                return None, UploadConflict(
                    f"The stored file has {info.size} bytes, not the {upload.file_size} "
                    "announced; upload it again."
                )
            video_type = sniff_video(await self.store.get_range(upload.s3_key, 0, SNIFF_BYTES - 1))
            if video_type is None:
                await self.store.delete(upload.s3_key)
                upload.status = UploadStatus.aborted.value
                return None, not_a_video()
            now = self.clock()
            filename = upload.filename.rsplit(".", 1)[0] + f".{video_type.extension}"
            video = await videos.add(
                Video(
                    user_id=user_id,
                    filename=filename,
                    original_filename=upload.original_filename,
                    s3_key=upload.s3_key,
                    s3_url=self.store.object_url(upload.s3_key),
                    s3_bucket=self.store.bucket,
                    content_type=video_type.content_type,
                    file_size=info.size,
                    # Unknown without reading every byte back; the client's claim stays
                    # on the upload row only.
                    sha256=None,
                    status=VideoStatus.processing.value,
                    created_at=now,
                    updated_at=now,
                )
            )
            upload.status = UploadStatus.completed.value
            upload.video_id = video.id
            upload.completed_at = now
            fresh = True
            result = UploadResult(upload.id, video, deduplicated=False)
        # Committed. If the commit had failed, the object would stay with its pending
        # session, so that a retried /complete finishes the job.
        if fresh:
            await self._enqueue(result.video.id)
        return result, None

    async def _completed_result(self, videos: VideoRepository, upload: Upload) -> UploadResult:
        video = await videos.get_live(upload.user_id, upload.video_id) if upload.video_id else None
        if video is None:
            raise UploadConflict("The video of this upload is no longer in your library.")
        return UploadResult(upload.id, video, deduplicated=video.s3_key != upload.s3_key)

    async def _assemble(self, upload: Upload, parts: Sequence[PartIn] | None) -> ObjectInfo:
        """The object of a session: completes a multipart upload when needed; 409 if absent."""
        info = await self.store.head(upload.s3_key)
        if info is not None or upload.method != UploadMethod.multipart.value:
            if info is None:
                raise UploadConflict("The file has not been uploaded yet.")
            return info
        assert upload.storage_upload_id
        assert upload.part_size
        try:
            held = await self.store.list_parts(upload.s3_key, upload.storage_upload_id)
        except ObjectNotFound as exc:
            raise UploadConflict(
                "Storage no longer holds this upload's parts; start a new upload."
            ) from exc
        manifest = _check_parts(upload, held, parts)
        try:
            return await self.store.complete_multipart(
                upload.s3_key, upload.storage_upload_id, manifest
            )
        except ObjectExists:
            info = await self.store.head(upload.s3_key)
        except (ObjectNotFound, InvalidPart) as exc:
            info = await self.store.head(upload.s3_key)
            if info is None:
                raise UploadConflict(
                    "Storage could not join the parts; check them with GET and retry."
                ) from exc
        assert info is not None
        return info


# -- transcripts ------------------------------------------------------------------


async def read_small_file(
    body: AsyncIterator[bytes], content_type: str | None, limit: int
) -> tuple[str | None, bytes]:
    """Buffer the ``file`` part of a multipart body, at most ``limit`` bytes (else 413)."""
    data = bytearray()
    name: str | None = None
    async for event in file_events(multipart_events(body, content_type)):
        if isinstance(event, PartStart):
            name = event.filename
        elif isinstance(event, PartData):
            data += event.data
            if len(data) > limit:
                raise UploadTooLarge(f"The file is larger than the {_size_text(limit)} limit.")
    return name, bytes(data)


async def add_transcript(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    body: AsyncIterator[bytes],
    content_type: str | None,
) -> Transcript:
    """Read, validate and store a transcript (flush only; the request's session commits)."""
    filename, raw = await read_small_file(body, content_type, MAX_TRANSCRIPT_BYTES)
    if not raw:
        raise Unprocessable("The file is empty.")
    try:
        # Parsing 2 MiB of subtitles is milliseconds of CPU: keep it off the event loop.
        parsed = await asyncio.to_thread(parse_transcript, raw, filename)
    except InvalidTranscript as exc:
        raise Unprocessable(str(exc)) from exc
    fallback = f"transcript.{parsed.format.value}"
    return await TranscriptRepository(session).add(
        Transcript(
            user_id=user_id,
            format=parsed.format.value,
            original_filename=original_filename(filename, fallback),
            characters=parsed.characters,
            cues=parsed.cues,
            content=parsed.text,
            created_at=utcnow(),
        )
    )


async def video_of_upload(
    session: AsyncSession, *, user_id: uuid.UUID, upload_id: uuid.UUID
) -> Video | None:
    """The live video a completed upload of the user produced (or deduplicated to)."""
    upload = await UploadRepository(session).get_owned(user_id, upload_id)
    if upload is None or upload.status != UploadStatus.completed.value or not upload.video_id:
        return None
    return await VideoRepository(session).get_live(user_id, upload.video_id)


def _part_count(upload: Upload) -> int:
    if upload.method != UploadMethod.multipart.value or not upload.part_size:
        return 1
    return math.ceil(upload.file_size / upload.part_size)


def _numbers(numbers: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _check_parts(
    upload: Upload, held: Sequence[PartInfo], claimed: Sequence[PartIn] | None
) -> list[PartInfo]:
    """The parts to join: every part present, with the sizes the session announced."""
    assert upload.part_size
    count = _part_count(upload)
    by_number = {p.part_number: p for p in held}
    missing = [n for n in range(1, count + 1) if n not in by_number]
    if missing:
        raise UploadConflict(f"Parts missing from storage: {_numbers(missing)}.")
    extra = sorted(n for n in by_number if n > count)
    if extra:
        raise UploadConflict(
            f"Parts beyond the last ({count}) were uploaded: {_numbers(extra)}; "
            "abort and start again."
        )
    last_size = upload.file_size - (count - 1) * upload.part_size
    wrong = [
        n
        for n in range(1, count + 1)
        if by_number[n].size != (upload.part_size if n < count else last_size)
    ]
    if wrong:
        raise UploadConflict(
            f"Parts with the wrong size: {_numbers(wrong)} (each part but the last must be "
            f"{upload.part_size} bytes and the last {last_size}); upload them again."
        )
    if claimed is not None:
        etags = {p.part_number: p.etag.strip('"') for p in claimed}
        mismatched = sorted(
            n for n, etag in etags.items() if n not in by_number or by_number[n].etag != etag
        )
        if mismatched:
            raise UploadConflict(
                f"Parts whose ETag differs from what storage holds: {_numbers(mismatched)}."
            )
    return [by_number[n] for n in range(1, count + 1)]
