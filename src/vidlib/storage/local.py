"""``LocalStore``: objects as plain files under one directory, served by the app itself.

Layout under ``root``::

    users/1/videos/2/original.mp4             the object's bytes
    users/1/videos/2/.~meta.original.mp4.json  its ETag and content type
    users/1/videos/2/.~tmp.<random>            a write in progress (never an object)
    .multipart/<upload id>/upload.json        a multipart upload: key, content type
    .multipart/<upload id>/3                  its part 3 (and .~meta.3.json)

Every write lands in a temporary file in the destination directory, is fsynced and
then published with ``os.link`` (fails if the key exists: never-overwrite writes)
or ``os.replace`` (overwrites). The metadata file records the inode, size and mtime
of the data file it describes, so a stale or missing one (a crash, a racing
overwrite) is detected and the ETag recomputed instead of trusted.

All blocking file I/O runs in worker threads, in chunks.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import json
import mimetypes
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from vidlib.storage.base import (
    DEFAULT_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    InvalidPart,
    MultipartUploadInfo,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    PartInfo,
    PresignedRequest,
    ReadUrlMemo,
    StorageError,
    run_shielded,
)
from vidlib.storage.signing import quote_key

T = TypeVar("T")

# Names starting with this are the store's own files; no key segment may use it.
RESERVED_PREFIX = ".~"
MULTIPART_DIR = ".multipart"
# First path segment of part-upload URLs, so it cannot start a key either.
MULTIPART_ROUTE = "_multipart"
MAX_KEY_BYTES = 1024
# Leaves room for the metadata file's name within the usual 255-byte limit.
MAX_SEGMENT_BYTES = 200
IO_CHUNK = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class SignatureError(Exception):
    """A local presigned URL is malformed, tampered with or expired (HTTP 403)."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative path inside the store, else ``ValueError``."""
    if not isinstance(key, str) or not key:
        raise ValueError("the key is empty")
    if "\x00" in key or "\\" in key:
        raise ValueError("the key contains a forbidden character")
    if key.startswith("/"):
        raise ValueError("the key is absolute")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError("the key is too long")
    segments = key.split("/")
    if segments[0] in (MULTIPART_DIR, MULTIPART_ROUTE):
        raise ValueError("the key uses a reserved prefix")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValueError("the key has an empty, '.' or '..' segment")
        if segment.startswith(RESERVED_PREFIX):
            raise ValueError("the key uses a reserved name")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ValueError("a key segment is too long")
    return key


def _meta_path(path: Path) -> Path:
    return path.with_name(f"{RESERVED_PREFIX}meta.{path.name}.json")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (temp file, fsync, rename)."""
    tmp = path.with_name(f"{RESERVED_PREFIX}tmp.{secrets.token_hex(8)}")
    try:
        with tmp.open("xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class _Meta:
    """What the metadata file says, and which data file it describes."""

    ino: int
    size: int
    mtime_ns: int
    etag: str
    content_type: str

    def info(self, key: str) -> ObjectInfo:
        """The object this metadata describes, as the store reports it."""
        return ObjectInfo(
            key=key,
            size=self.size,
            etag=self.etag,
            content_type=self.content_type,
            last_modified=datetime.fromtimestamp(self.mtime_ns / 1e9, UTC),
        )

    def describes(self, st: os.stat_result) -> bool:
        return (self.ino, self.size, self.mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)

    def dumps(self) -> bytes:
        return json.dumps(
            {
                "ino": self.ino,
                "size": self.size,
                "mtime_ns": self.mtime_ns,
                "etag": self.etag,
                "content_type": self.content_type,
            }
        ).encode()


def _read_meta(path: Path) -> _Meta | None:
    try:
        raw = json.loads(_meta_path(path).read_bytes())
        return _Meta(
            int(raw["ino"]),
            int(raw["size"]),
            int(raw["mtime_ns"]),
            str(raw["etag"]),
            str(raw["content_type"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _md5_of_fd(fd: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    offset = 0
    while chunk := os.pread(fd, IO_CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _describe(path: Path, fd: int, st: os.stat_result, key: str) -> ObjectInfo:
    """ObjectInfo for an open data file, repairing its metadata file when stale."""
    meta = _read_meta(path)
    if meta is None or not meta.describes(st):
        old_type = meta.content_type if meta is not None else None
        content_type = old_type or mimetypes.guess_type(key)[0] or DEFAULT_CONTENT_TYPE
        meta = _Meta(st.st_ino, st.st_size, st.st_mtime_ns, _md5_of_fd(fd), content_type)
        with contextlib.suppress(OSError):
            _write_file_atomic(_meta_path(path), meta.dumps())
    return ObjectInfo(
        key=key,
        size=st.st_size,
        etag=meta.etag,
        content_type=meta.content_type,
        last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
    )


class _TempFile:
    """A file being written in its destination directory, hashed as it goes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"{RESERVED_PREFIX}tmp.{secrets.token_hex(12)}"
        for attempt in range(5):
            directory.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                break
            except FileNotFoundError:
                # A concurrent delete pruned the (empty) directory in between: retry.
                if attempt == 4:
                    raise
        self.file = os.fdopen(fd, "wb")
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.file.write(data)
        self.md5.update(data)
        self.size += len(data)

    def finish(self) -> os.stat_result:
        """Flush to disk and close; the stat of the finished file."""
        self.file.flush()
        os.fsync(self.file.fileno())
        st = os.fstat(self.file.fileno())
        self.file.close()
        return st

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.path.unlink(missing_ok=True)


def _publish(tmp: _TempFile, path: Path, content_type: str, overwrite: bool) -> _Meta:
    """Make the temp file the data file at ``path`` and record its metadata."""
    st = tmp.finish()
    meta = _Meta(st.st_ino, st.st_size, st.st_mtime_ns, tmp.md5.hexdigest(), content_type)
    if overwrite:
        os.replace(tmp.path, path)
    else:
        try:
            # link() refuses an existing name atomically: a racing writer cannot be
            # overwritten, unlike an exists() check followed by rename().
            os.link(tmp.path, path)
        except FileExistsError:
            raise ObjectExists("the key already holds an object") from None
        tmp.path.unlink()
    _write_file_atomic(_meta_path(path), meta.dumps())
    _fsync_dir(path.parent)
    return meta


def _unlink_object(path: Path) -> None:
    path.unlink(missing_ok=True)
    _meta_path(path).unlink(missing_ok=True)


async def _coalesce(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytearray]:
    """Regroup a stream into blocks of about IO_CHUNK: one thread hop per MiB written."""
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        if len(pending) >= IO_CHUNK:
            block, pending = pending, bytearray()
            yield block
    if pending:
        yield pending


class LocalObject:
    """An object opened for reading: its metadata and an open file."""

    def __init__(self, fd: int, info: ObjectInfo) -> None:
        """Wrap an open file descriptor (owned from now on)."""
        self.fd = fd
        self.info = info

    async def iter(
        self, start: int = 0, end: int | None = None, *, chunk_size: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        """Bytes ``start..end`` inclusive, read in chunks in a worker thread."""
        last = self.info.size - 1 if end is None else min(end, self.info.size - 1)
        offset = start
        while offset <= last:
            size = min(chunk_size, last - offset + 1)
            try:
                chunk = await anyio.to_thread.run_sync(os.pread, self.fd, size, offset)
            except OSError as exc:
                raise StorageError(f"local storage failed: {type(exc).__name__}") from exc
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    def close(self) -> None:
        """Close the file."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        # A response that never started streaming must not leak the descriptor.
        self.close()


class LocalStore:
    """Object storage in a directory, with HMAC-signed URLs served by the app."""

    def __init__(self, root: Path, public_url: str, secret: bytes) -> None:
        """Files live under ``root``; URLs start with ``{public_url}/storage/``."""
        if not secret:
            raise ValueError("the signing secret is empty")
        self.root = Path(root).absolute()
        self.public_url = public_url.rstrip("/")
        self._secret = hashlib.sha256(b"vidlib-local-storage\x00" + secret).digest()
        self._read_urls = ReadUrlMemo()

    # -- helpers ------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    @staticmethod
    async def _run(func: Callable[..., T], *args: Any) -> T:
        """Run blocking file I/O in a worker thread; OS failures become StorageError."""
        try:
            return await anyio.to_thread.run_sync(func, *args)
        except (StorageError, ValueError):
            raise
        except OSError as exc:
            raise StorageError(f"local storage failed: {type(exc).__name__}") from exc

    def _session_dir(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            raise ObjectNotFound("no such multipart upload")
        return self.root / MULTIPART_DIR / upload_id

    def _load_session(self, upload_id: str, key: str | None) -> tuple[Path, dict[str, Any]]:
        directory = self._session_dir(upload_id)
        try:
            session: dict[str, Any] = json.loads((directory / "upload.json").read_bytes())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise ObjectNotFound("no such multipart upload") from None
        if key is not None and session.get("key") != key:
            raise ObjectNotFound("no such multipart upload")
        return directory, session

    def _sign(self, *fields: str) -> str:
        return hmac.new(self._secret, "\n".join(fields).encode(), hashlib.sha256).hexdigest()

    def _expiry(self, expires_in: int) -> int:
        if expires_in < 1:
            raise ValueError("expires_in must be positive")
        return int(time.time()) + expires_in

    def _check(self, fields: Sequence[str], expires: str | None, signature: str | None) -> None:
        if (
            not expires
            or not signature
            or not (expires.isascii() and expires.isdigit() and len(expires) <= 12)
            or not signature.isascii()
        ):
            raise SignatureError("The URL is not signed.")
        expected = self._sign(*fields, expires)
        if not hmac.compare_digest(expected, signature):
            raise SignatureError("The URL signature does not match.")
        if int(expires) < time.time():
            raise SignatureError("The URL has expired.")

    # -- signature checks used by the router -----------------------------------------

    def verify_get(self, key: str, expires: str | None, signature: str | None) -> None:
        """Accept a presigned GET/HEAD URL or raise ``SignatureError``."""
        self._check(("GET", key), expires, signature)

    def verify_put(
        self,
        key: str,
        expires: str | None,
        signature: str | None,
        *,
        content_type: str,
        content_length: int,
    ) -> None:
        """Accept a presigned PUT with these headers or raise ``SignatureError``."""
        ctype = " ".join(content_type.split())
        self._check(("PUT", key, ctype, str(content_length)), expires, signature)

    def verify_part(
        self, upload_id: str, part_number: int, expires: str | None, signature: str | None
    ) -> None:
        """Accept a presigned part URL or raise ``SignatureError``."""
        self._check(("PART", upload_id, str(part_number)), expires, signature)

    # -- the ObjectStore contract -------------------------------------------------

    @property
    def bucket(self) -> str:
        """Always ``"local"``."""
        return "local"

    def object_url(self, key: str) -> str:
        """The unsigned URL of the key on this app."""
        return f"{self.public_url}/storage/{quote_key(validate_key(key))}"

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> ObjectInfo:
        """Stream to a temp file and publish it atomically; never overwrites."""
        path = self._path(key)
        if await self._run(os.path.lexists, path):
            raise ObjectExists("the key already holds an object")
        tmp = await self._run(_TempFile, path.parent)
        published = False

        async def commit() -> _Meta:
            nonlocal published
            meta = await self._run(_publish, tmp, path, content_type, False)
            published = True
            return meta

        try:
            async for block in _coalesce(chunks):
                await self._run(tmp.write, block)
            meta = await run_shielded(commit())
        except BaseException:

            def discard() -> None:
                tmp.discard()
                if published:
                    _unlink_object(path)

            await run_shielded(self._run(discard))
            raise
        return meta.info(key)

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> ObjectInfo:
        """Write a small object atomically (overwrites)."""
        path = self._path(key)

        def write() -> _Meta:
            tmp = _TempFile(path.parent)
            try:
                tmp.write(data)
                return _publish(tmp, path, content_type, True)
            finally:
                tmp.discard()

        meta = await self._run(write)
        return meta.info(key)

    def _open(self, key: str) -> LocalObject | None:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
            return LocalObject(fd, _describe(path, fd, st, key))
        except BaseException:
            os.close(fd)
            raise

    async def open_object(self, key: str) -> LocalObject:
        """Open an object for reading (``ObjectNotFound``); the caller closes it."""
        obj = await self._run(self._open, key)
        if obj is None:
            raise ObjectNotFound("no such key")
        return obj

    async def head(self, key: str) -> ObjectInfo | None:
        """Object metadata, or ``None``."""
        obj = await self._run(self._open, key)
        if obj is None:
            return None
        obj.close()
        return obj.info

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        """Bytes ``start..end`` inclusive (empty when ``start`` is past the end)."""
        return b"".join([chunk async for chunk in self.iter_range(key, start, end)])

    async def iter_range(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start..end`` inclusive from disk, chunk by chunk."""
        if start < 0 or (end is not None and end < start):
            raise ValueError("invalid byte range")
        obj = await self.open_object(key)
        try:
            async for chunk in obj.iter(start, end, chunk_size=chunk_size):
                yield chunk
        finally:
            obj.close()

    async def delete(self, key: str) -> None:
        """Remove an object and prune directories it leaves empty; absent is fine."""
        path = self._path(key)
        root = self.root

        def remove() -> None:
            if path.is_dir():
                return
            _unlink_object(path)
            parent = path.parent
            while parent != root and root in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

        await self._run(remove)

    def _keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, in S3 order (UTF-8 bytes)."""
        head, _, _ = prefix.rpartition("/")
        if head:
            try:
                validate_key(head)
            except ValueError:
                return []  # no valid key lies under this prefix
        start = self.root / head if head else self.root
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(RESERVED_PREFIX)
                and not (base == "" and d == MULTIPART_DIR)
                and (base + d + "/").startswith(prefix[: len(base + d + "/")])
            ]
            found.extend(
                base + name
                for name in filenames
                if not name.startswith(RESERVED_PREFIX) and (base + name).startswith(prefix)
            )
        found.sort(key=lambda k: k.encode("utf-8"))
        return found

    def _infos(self, keys: Sequence[str]) -> list[ObjectInfo]:
        infos = []
        for key in keys:
            obj = self._open(key)
            if obj is not None:
                obj.close()
                infos.append(obj.info)
        return infos

    async def list(self, prefix: str, *, page_size: int = 1000) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix`` in key order."""
        if "\x00" in prefix or prefix.startswith("/"):
            raise ValueError("invalid prefix")
        keys = await self._run(self._keys, prefix)
        for i in range(0, len(keys), page_size):
            for info in await self._run(self._infos, keys[i : i + page_size]):
                yield info

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """A signed GET URL on this app."""
        validate_key(key)
        if expires_in < 1:
            raise ValueError("expires_in must be positive")

        def sign(signed_at: int) -> str:
            expires = str(signed_at + expires_in)
            signature = self._sign("GET", key, expires)
            query = f"expires={expires}&signature={signature}"
            return f"{self.public_url}/storage/{quote_key(key)}?{query}"

        return self._read_urls.get(key, expires_in, sign)

    def presign_put(
        self, key: str, *, content_type: str, content_length: int, expires_in: int
    ) -> PresignedRequest:
        """A signed PUT bound to key, content type and length; never overwrites."""
        validate_key(key)
        if content_length < 0:
            raise ValueError("content_length must not be negative")
        expires_at = self._expiry(expires_in)
        expires = str(expires_at)
        ctype = " ".join(content_type.split())
        signature = self._sign("PUT", key, ctype, str(content_length), expires)
        return PresignedRequest(
            method="PUT",
            url=(
                f"{self.public_url}/storage/{quote_key(key)}"
                f"?expires={expires}&signature={signature}"
            ),
            headers={
                "Content-Type": content_type,
                "Content-Length": str(content_length),
                "If-None-Match": "*",
            },
            expires_at=datetime.fromtimestamp(expires_at, UTC),
        )

    async def create_multipart(self, key: str, *, content_type: str) -> str:
        """Start an upload: a session directory with its key and content type."""
        validate_key(key)
        upload_id = secrets.token_hex(16)
        directory = self.root / MULTIPART_DIR / upload_id
        session = {
            "key": key,
            "content_type": content_type,
            "initiated": datetime.now(UTC).isoformat(),
        }

        def create() -> None:
            directory.mkdir(parents=True)
            _write_file_atomic(directory / "upload.json", json.dumps(session).encode())

        await self._run(create)
        return upload_id

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires_in: int) -> str:
        """A signed PUT URL for one part, on this app."""
        validate_key(key)
        self._session_dir(upload_id)
        if not 1 <= part_number <= MAX_PARTS:
            raise ValueError(f"part_number must be between 1 and {MAX_PARTS}")
        expires = str(self._expiry(expires_in))
        signature = self._sign("PART", upload_id, str(part_number), expires)
        return (
            f"{self.public_url}/storage/{MULTIPART_ROUTE}/{upload_id}/{part_number}"
            f"?expires={expires}&signature={signature}"
        )

    async def write_part(
        self, upload_id: str, part_number: int, chunks: AsyncIterator[bytes]
    ) -> PartInfo:
        """Store one part (replacing an earlier upload of the same number)."""
        if not 1 <= part_number <= MAX_PARTS:
            raise ValueError(f"part_number must be between 1 and {MAX_PARTS}")
        directory, _ = await self._run(self._load_session, upload_id, None)
        tmp = await self._run(_TempFile, directory)
        try:
            async for block in _coalesce(chunks):
                await self._run(tmp.write, block)

            def publish() -> _Meta:
                if not (directory / "upload.json").exists():
                    raise ObjectNotFound("the upload was aborted")
                return _publish(tmp, directory / str(part_number), "", True)

            meta = await self._run(publish)
        except BaseException:
            await run_shielded(self._run(tmp.discard))
            raise
        return PartInfo(part_number=part_number, size=meta.size, etag=meta.etag)

    def _parts(self, directory: Path) -> builtins.list[PartInfo]:
        parts = []
        for entry in os.scandir(directory):
            if not entry.name.isdigit():
                continue
            path = Path(entry.path)
            obj = None
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    info = _describe(path, fd, os.fstat(fd), entry.name)
                finally:
                    os.close(fd)
                obj = PartInfo(part_number=int(entry.name), size=info.size, etag=info.etag)
            if obj is not None:
                parts.append(obj)
        return sorted(parts, key=lambda p: p.part_number)

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """The parts uploaded so far, in order."""

        def run() -> builtins.list[PartInfo]:
            directory, _ = self._load_session(upload_id, key)
            try:
                return self._parts(directory)
            except FileNotFoundError:
                raise ObjectNotFound("no such multipart upload") from None

        return await self._run(run)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo]
    ) -> ObjectInfo:
        """Concatenate the parts (streaming) into the object; never overwrites."""
        path = self._path(key)

        def run() -> ObjectInfo:
            directory, session = self._load_session(upload_id, key)
            if not parts:
                raise InvalidPart("no parts to complete")
            stored = {p.part_number: p for p in self._parts(directory)}
            # Order-insensitive like S3Store (which sorts before sending); duplicates fail.
            ordered = sorted(parts, key=lambda p: p.part_number)
            previous = 0
            for i, part in enumerate(ordered):
                have = stored.get(part.part_number)
                if part.part_number <= previous:
                    raise InvalidPart("a part number appears twice")
                if have is None or have.etag != part.etag.strip('"'):
                    raise InvalidPart("a part is missing or its ETag does not match")
                if i < len(ordered) - 1 and have.size < MIN_PART_SIZE:
                    raise InvalidPart("a part other than the last is under 5 MiB")
                previous = part.part_number
            if os.path.lexists(path):
                raise ObjectExists("the key already holds an object")
            tmp = _TempFile(path.parent)
            try:
                for part in ordered:
                    with (directory / str(part.part_number)).open("rb") as src:
                        while chunk := src.read(IO_CHUNK):
                            tmp.write(chunk)
                content_type = str(session.get("content_type") or DEFAULT_CONTENT_TYPE)
                meta = _publish(tmp, path, content_type, False)
            finally:
                tmp.discard()
            shutil.rmtree(directory, ignore_errors=True)
            return meta.info(key)

        return await self._run(run)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Remove the upload and its parts; absent is fine."""

        def run() -> None:
            try:
                directory, _ = self._load_session(upload_id, key)
            except ObjectNotFound:
                return
            shutil.rmtree(directory, ignore_errors=True)

        await self._run(run)

    def _uploads(self, prefix: str) -> builtins.list[MultipartUploadInfo]:
        base = self.root / MULTIPART_DIR
        uploads = []
        try:
            entries = list(os.scandir(base))
        except FileNotFoundError:
            return []
        for entry in entries:
            if not _UPLOAD_ID.fullmatch(entry.name):
                continue
            try:
                _, session = self._load_session(entry.name, None)
            except ObjectNotFound:
                continue
            key = str(session.get("key", ""))
            if not key.startswith(prefix):
                continue
            initiated = session.get("initiated")
            uploads.append(
                MultipartUploadInfo(
                    key=key,
                    upload_id=entry.name,
                    initiated=datetime.fromisoformat(initiated) if initiated else None,
                )
            )
        return sorted(uploads, key=lambda u: (u.key.encode("utf-8"), u.upload_id))

    async def list_multipart_uploads(self, prefix: str) -> AsyncIterator[MultipartUploadInfo]:
        """Incomplete uploads whose key starts with ``prefix``."""
        for upload in await self._run(self._uploads, prefix):
            yield upload

    async def check(self) -> None:
        """The root directory exists (or can be created) and is writable."""

        def run() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise StorageError("the storage directory is not writable")

        await self._run(run)

    async def close(self) -> None:
        """Nothing to release."""
