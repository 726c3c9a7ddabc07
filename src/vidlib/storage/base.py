"""The object-store interface every other part of vidlib uses.

Two implementations: ``s3.S3Store`` (any S3-compatible endpoint, async client) and
``local.LocalStore`` (files under ``DATA_DIR/storage``, served by the app itself).
Presigning is pure CPU (no network round trip), so it is synchronous.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar, runtime_checkable

import anyio

MIB = 1024 * 1024
# S3's floor for every multipart part but the last, and its part-count ceiling.
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MIB


class StorageError(Exception):
    """Storage failed or is unreachable (the caller answers 503; never shown raw)."""


class ObjectNotFound(StorageError):
    """The key (or multipart upload) does not exist."""


class ObjectExists(StorageError):
    """A write would have overwritten an existing object."""


class InvalidPart(StorageError):
    """The part list given to complete a multipart upload does not match what storage holds.

    Missing part, ETag mismatch, parts out of order, or a non-final part under
    ``MIN_PART_SIZE``: the caller's fault (400), retrying cannot help.
    """


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What storage knows about one stored object."""

    key: str
    size: int
    etag: str
    content_type: str | None = None
    last_modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One uploaded part of a multipart upload."""

    part_number: int
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class MultipartUploadInfo:
    """An incomplete multipart upload found in storage."""

    key: str
    upload_id: str
    initiated: datetime | None


@dataclass(frozen=True, slots=True)
class PresignedRequest:
    """A request the client makes directly to storage."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None


class ReadUrlMemo:
    """Hands out the same presigned read URL for a key within a short window.

    A URL is signed as of the start of the current window (at most a minute, a tenth of
    the lifetime for short ones), so every listing in that window shows the same URL:
    signing is skipped, and the app's image and video caches, keyed by URL, keep
    working across refreshes. The price is that a URL is valid for between 90% and
    100% of the configured lifetime from when it is handed out.
    """

    def __init__(self, max_window: int = 60, max_entries: int = 100_000) -> None:
        self.max_window = max_window
        self.max_entries = max_entries
        self._urls: dict[tuple[str, int], tuple[int, str]] = {}

    def get(self, key: str, expires_in: int, sign: Callable[[int], str]) -> str:
        """The URL for ``key``; ``sign(signed_at)`` makes one signed at that Unix time."""
        window = min(self.max_window, expires_in // 10)
        now = int(time.time())
        if window < 2:
            return sign(now)
        start = now - now % window
        held = self._urls.get((key, expires_in))
        if held is not None and held[0] == start:
            return held[1]
        if len(self._urls) >= self.max_entries:
            self._urls = {}
        url = sign(start)
        self._urls[(key, expires_in)] = (start, url)
        return url


@runtime_checkable
class ObjectStore(Protocol):
    """Async object storage with presigned access."""

    @property
    def bucket(self) -> str:
        """Bucket name stored in ``videos.s3_bucket`` ("local" for the local store)."""
        ...

    def object_url(self, key: str) -> str:
        """The permanent, unsigned URL of a key (stored in ``videos.s3_url``)."""
        ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> ObjectInfo:
        """Store an async byte stream; multipart above ``part_size``; bounded memory.

        Never overwrites (``ObjectExists``). On any error, including cancellation,
        nothing is left behind (the multipart upload is aborted).
        """
        ...

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> ObjectInfo:
        """Store a small object in one request (overwrites: used for derived files)."""
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """Object metadata, or ``None`` when absent."""
        ...

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        """Bytes ``start..end`` inclusive (``end=None``: to the end). ``ObjectNotFound``."""
        ...

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start..end`` inclusive without holding them whole."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; absent is not an error."""
        ...

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix``, paginating as needed."""
        ...

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """A GET URL valid ``expires_in`` seconds (CDN base URL when configured)."""
        ...

    def presign_put(
        self, key: str, *, content_type: str, content_length: int, expires_in: int
    ) -> PresignedRequest:
        """A single PUT bound to key, content type and length, that cannot overwrite."""
        ...

    async def create_multipart(self, key: str, *, content_type: str) -> str:
        """Start a multipart upload; returns its storage upload id."""
        ...

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires_in: int) -> str:
        """A PUT URL for one part of a multipart upload."""
        ...

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """Parts storage holds for an upload, in order (paginated past 1,000)."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo]
    ) -> ObjectInfo:
        """Join the parts into the object."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort; the parts are removed. Absent is not an error."""
        ...

    def list_multipart_uploads(self, prefix: str) -> AsyncIterator[MultipartUploadInfo]:
        """Incomplete multipart uploads under ``prefix``."""
        ...

    async def check(self) -> None:
        """Raise ``StorageError`` when storage is unreachable (readiness)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


T = TypeVar("T")


async def run_shielded(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to completion even if the caller is cancelled meanwhile."""
    # For commits and clean-ups that must not be cut in half: the work runs in its
    # own task; a cancellation arriving meanwhile is re-raised once the work is done.
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    # The anyio shield stops cancel scopes (Starlette, timeouts) re-cancelling us on
    # every iteration; asyncio.wait never cancels the task it waits for.
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation below supersedes it
        raise asyncio.CancelledError
    return task.result()
