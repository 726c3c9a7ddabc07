"""``S3Store``: any S3-compatible endpoint through aiobotocore (never blocking the loop)."""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import logging
import types
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import anyio.to_thread
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from vidlib.storage.base import (
    DEFAULT_PART_SIZE,
    MAX_PARTS,
    MIB,
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
from vidlib.storage.signing import (
    CredentialsRefresher,
    FrozenCredentials,
    SigV4Presigner,
    base_url_from_presigned,
    quote_key,
    snapshot_credentials,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger("vidlib.storage.s3")

AddressingStyle = Literal["auto", "path", "virtual"]
# S3's ceiling for a single PUT (presigned or not).
MAX_SINGLE_PUT = 5 * 1024 * MIB
# Part uploads running at once inside put_stream: with the part being filled, memory
# stays under three parts however fast the source is.
PARTS_IN_FLIGHT = 2
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})
_INVALID_PART_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})
_PRECONDITION_CODES = frozenset({"412", "PreconditionFailed"})
# Exceptions that mean "the network or the endpoint failed", besides botocore's own.
_TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError)


def _error_code(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), int(status or 0)


class _MapErrors:
    """Turns botocore/network failures into the storage error family.

    Messages are generic on purpose: the raw endpoint text stays on ``__cause__`` for
    logs and never reaches a response.
    """

    def __init__(self, action: str, *, not_found: bool = True) -> None:
        self.action = action
        self.not_found = not_found

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, StorageError):
            return
        if isinstance(exc, ClientError):
            code, status = _error_code(exc)
            if self.not_found and (code in _NOT_FOUND_CODES or status == 404):
                raise ObjectNotFound(f"{self.action}: not found") from exc
            if code in _PRECONDITION_CODES or status == 412:
                raise ObjectExists(f"{self.action}: the key already holds an object") from exc
            if code in _INVALID_PART_CODES:
                raise InvalidPart(f"{self.action}: the part list does not match") from exc
            raise StorageError(f"{self.action} failed ({code or status})") from exc
        if isinstance(exc, _TRANSPORT_ERRORS):
            raise StorageError(f"{self.action} failed: storage unreachable") from exc


def _strip_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def _quote_etag(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _md5_b64(data: bytes) -> str:
    # Content-MD5 makes the server verify the body, and over HTTPS lets botocore skip
    # hashing the payload with SHA-256 on the event loop.
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class S3Store:
    """Object storage on an S3 bucket (AWS, SeaweedFS, MinIO, R2...)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        addressing_style: AddressingStyle = "auto",
        public_base_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_pool_connections: int = 50,
        conditional_writes: bool = True,
    ) -> None:
        """Configure; nothing connects until ``start()`` (``open_store`` calls it)."""
        if (access_key is None) != (secret_key is None):
            raise ValueError("access_key and secret_key go together")
        self._bucket = bucket
        self._endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self._region = region
        # Custom endpoints (SeaweedFS, MinIO) rarely have wildcard DNS for buckets.
        if addressing_style == "auto" and endpoint_url:
            addressing_style = "path"
        self._addressing_style: AddressingStyle = addressing_style
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._read_urls = ReadUrlMemo()
        self._access_key = access_key
        self._secret_key = secret_key
        self._session_token = session_token
        self._config = AioConfig(
            region_name=region,
            signature_version="s3v4",
            # Bodies are not SHA-256 hashed for the signature (botocore would hash every
            # part on the event loop over plain HTTP): every body we send carries a
            # Content-MD5, computed off the loop and covered by the signature, which the
            # server checks. Over HTTPS botocore already behaves this way.
            s3={"addressing_style": addressing_style, "payload_signing_enabled": False},
            # total_max_attempts counts the first try; plain max_attempts would not.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            # Only checksums the API requires: flexible checksums (CRC32 trailers,
            # aws-chunked bodies) are not implemented by every S3-compatible server.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Loading the S3 model is ~tens of ms of JSON parsing: off the loop.
            warm_up_loader_caches=True,
        )
        self._conditional_writes = conditional_writes
        self._stack: AsyncExitStack | None = None
        self._client: S3Client | None = None
        self._presigner: SigV4Presigner | None = None
        self._refresher: CredentialsRefresher | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Create the client, snapshot credentials and find the bucket's URL."""
        if self._client is not None:
            return
        stack = AsyncExitStack()
        try:
            session = AioSession()
            client = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    aws_access_key_id=self._access_key,
                    aws_secret_access_key=self._secret_key,
                    aws_session_token=self._session_token,
                    config=self._config,
                )
            )
            if self._access_key is not None and self._secret_key is not None:
                source: Any = None
                credentials = FrozenCredentials(
                    self._access_key, self._secret_key, self._session_token
                )
            else:
                # The client took the same (cached) object from the session.
                source = await session.get_credentials()
                if source is None:
                    raise StorageError("no AWS credentials found for S3 storage")
                credentials = await snapshot_credentials(source)
            # Let botocore resolve the endpoint once (regional/global, style, custom
            # endpoint); the fast signer then reuses that base URL for every key.
            probe = await client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": "k"}, ExpiresIn=60
            )
            presigner = SigV4Presigner(
                base_url_from_presigned(probe, "k"), self._region, credentials
            )
            if source is not None:
                refresher = CredentialsRefresher(source, presigner)
                refresher.start()
                stack.push_async_callback(refresher.stop)
                self._refresher = refresher
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._client, self._presigner = stack, client, presigner

    async def close(self) -> None:
        """Stop the credentials refresher and release connections."""
        stack, self._stack = self._stack, None
        self._client = None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> S3Store:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def client(self) -> S3Client:
        """The underlying aiobotocore client (started)."""
        if self._client is None:
            raise RuntimeError("S3Store.start() has not been awaited")
        return self._client

    @property
    def presigner(self) -> SigV4Presigner:
        """The fast presigner (started)."""
        if self._presigner is None:
            raise RuntimeError("S3Store.start() has not been awaited")
        return self._presigner

    # -- the ObjectStore contract -------------------------------------------------------

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    def object_url(self, key: str) -> str:
        """The permanent unsigned URL (the public base URL when configured)."""
        if self._public_base_url:
            return f"{self._public_base_url}/{quote_key(key)}"
        return self.presigner.url_for(key)

    async def head(self, key: str) -> ObjectInfo | None:
        """Object metadata, or ``None``."""
        try:
            with _MapErrors("head"):
                resp = await self.client.head_object(Bucket=self._bucket, Key=key)
        except ObjectNotFound:
            return None
        return ObjectInfo(
            key=key,
            size=int(resp.get("ContentLength", 0)),
            etag=_strip_etag(resp.get("ETag")),
            content_type=resp.get("ContentType"),
            last_modified=resp.get("LastModified"),
        )

    async def _raise_if_exists(self, key: str) -> None:
        # The conditional header is the real guard; this HEAD also covers servers that
        # ignore If-None-Match, and fails fast before any byte is uploaded.
        if await self.head(key) is not None:
            raise ObjectExists("the key already holds an object")

    async def _conditional(self, call: Callable[[bool], Awaitable[Any]]) -> Any:
        """Run a write with If-None-Match: *, dropping it if the server rejects the header."""
        if not self._conditional_writes:
            return await call(False)
        try:
            return await call(True)
        except ClientError as exc:
            code, status = _error_code(exc)
            if code != "NotImplemented" and status != 501:
                raise
            log.warning("storage does not support If-None-Match; relying on HEAD checks")
            self._conditional_writes = False
            return await call(False)

    async def _put_object(
        self, key: str, data: bytes, content_type: str, *, if_none_match: bool
    ) -> str:
        md5 = await anyio.to_thread.run_sync(_md5_b64, data)

        async def call(conditional: bool) -> Any:
            extra: dict[str, Any] = {"IfNoneMatch": "*"} if conditional else {}
            return await self.client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                ContentMD5=md5,
                **extra,
            )

        with _MapErrors("put", not_found=False):
            resp = await (self._conditional(call) if if_none_match else call(False))
        return _strip_etag(resp.get("ETag"))

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> ObjectInfo:
        """Store a small object in one request (overwrites)."""
        if len(data) > MAX_SINGLE_PUT:
            raise ValueError("put_bytes is limited to 5 GiB")
        etag = await self._put_object(key, data, content_type, if_none_match=False)
        return ObjectInfo(key=key, size=len(data), etag=etag, content_type=content_type)

    async def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> PartInfo:
        md5 = await anyio.to_thread.run_sync(_md5_b64, data)
        with _MapErrors("upload part"):
            resp = await self.client.upload_part(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=md5,
            )
        return PartInfo(part_number=number, size=len(data), etag=_strip_etag(resp.get("ETag")))

    async def _complete(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> str:
        payload: Any = {
            "Parts": [
                {"PartNumber": p.part_number, "ETag": _quote_etag(p.etag)}
                for p in sorted(parts, key=lambda p: p.part_number)
            ]
        }

        async def call(conditional: bool) -> Any:
            extra: dict[str, Any] = {"IfNoneMatch": "*"} if conditional else {}
            return await self.client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload=payload,
                **extra,
            )

        with _MapErrors("complete multipart"):
            resp = await self._conditional(call)
        return _strip_etag(resp.get("ETag"))

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> ObjectInfo:
        """Store a stream: one PUT below ``part_size``, else multipart with bounded memory."""
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        await self._raise_if_exists(key)
        buf = bytearray()
        upload_id: str | None = None
        parts: list[PartInfo] = []
        in_flight: deque[asyncio.Task[PartInfo]] = deque()
        committed = False
        size = 0

        def next_part() -> bytes:
            data = bytes(memoryview(buf)[:part_size])
            del buf[:part_size]
            return data

        async def launch(data: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                upload_id = await self.create_multipart(key, content_type=content_type)
            if len(in_flight) >= PARTS_IN_FLIGHT:
                parts.append(await in_flight.popleft())
            number = len(parts) + len(in_flight) + 1
            if number > MAX_PARTS:
                raise ValueError("the stream needs more than 10,000 parts; raise part_size")
            in_flight.append(asyncio.ensure_future(self._upload_part(key, upload_id, number, data)))

        async def commit() -> str:
            nonlocal committed
            if upload_id is None:
                etag = await self._put_object(key, bytes(buf), content_type, if_none_match=True)
            else:
                etag = await self._complete(key, upload_id, parts)
            committed = True
            return etag

        try:
            async for chunk in chunks:
                buf += chunk
                size += len(chunk)
                # Strictly more than a part: a stream of exactly one part stays one PUT.
                while len(buf) > part_size:
                    await launch(next_part())
            if upload_id is not None:
                if buf:
                    await launch(next_part())
                while in_flight:
                    parts.append(await in_flight.popleft())
            etag = await run_shielded(commit())
        except BaseException:
            await run_shielded(self._discard(key, upload_id, in_flight, committed=committed))
            raise
        return ObjectInfo(key=key, size=size, etag=etag, content_type=content_type)

    async def _discard(
        self,
        key: str,
        upload_id: str | None,
        in_flight: deque[asyncio.Task[PartInfo]],
        *,
        committed: bool,
    ) -> None:
        """Leave nothing behind after a failed or cancelled put_stream."""
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        try:
            if committed:
                # Cancelled after the object was created (by us: the write was
                # conditional): the caller asked for nothing to remain.
                await self.delete(key)
            elif upload_id is not None:
                await self.abort_multipart(key, upload_id)
        except Exception:
            log.warning("cleaning up a failed upload failed", exc_info=True)

    async def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        """Bytes ``start..end`` inclusive (empty when ``start`` is past the end)."""
        return b"".join([chunk async for chunk in self.iter_range(key, start, end)])

    async def iter_range(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start..end`` inclusive (nothing when ``start`` is past the end)."""
        if start < 0 or (end is not None and end < start):
            raise ValueError("invalid byte range")
        byte_range = f"bytes={start}-{'' if end is None else end}"
        try:
            with _MapErrors("get"):
                resp = await self.client.get_object(Bucket=self._bucket, Key=key, Range=byte_range)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _error_code(cause)[0] == "InvalidRange":
                return
            raise
        body = resp["Body"]
        try:
            with _MapErrors("get"):
                async for chunk in body.iter_chunks(chunk_size):
                    yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        """Remove an object; absent is fine."""
        try:
            with _MapErrors("delete"):
                await self.client.delete_object(Bucket=self._bucket, Key=key)
        except ObjectNotFound:
            return

    async def list(self, prefix: str, *, page_size: int = 1000) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix`` in key order, ``page_size`` keys per request."""
        paginator = self.client.get_paginator("list_objects_v2")
        with _MapErrors("list", not_found=False):
            async for page in paginator.paginate(
                Bucket=self._bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
            ):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=int(item.get("Size", 0)),
                        etag=_strip_etag(item.get("ETag")),
                        last_modified=item.get("LastModified"),
                    )

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """A GET URL: the public (CDN) URL when configured, else presigned."""
        if self._public_base_url:
            return self.object_url(key)
        presigner = self.presigner
        return self._read_urls.get(
            key,
            expires_in,
            lambda signed_at: presigner.presign("GET", key, expires_in=expires_in, now=signed_at),
        )

    def presign_put(
        self, key: str, *, content_type: str, content_length: int, expires_in: int
    ) -> PresignedRequest:
        """A PUT bound to key, type and length, that cannot overwrite (If-None-Match)."""
        if not 0 <= content_length <= MAX_SINGLE_PUT:
            raise ValueError("content_length must be between 0 and 5 GiB")
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(content_length),
            "If-None-Match": "*",
        }
        url = self.presigner.presign("PUT", key, expires_in=expires_in, headers=headers)
        return PresignedRequest(
            method="PUT",
            url=url,
            headers=headers,
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        )

    async def create_multipart(self, key: str, *, content_type: str) -> str:
        """Start a multipart upload."""
        with _MapErrors("create multipart", not_found=False):
            resp = await self.client.create_multipart_upload(
                Bucket=self._bucket, Key=key, ContentType=content_type
            )
        return resp["UploadId"]

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires_in: int) -> str:
        """A PUT URL for one part."""
        if not 1 <= part_number <= MAX_PARTS:
            raise ValueError(f"part_number must be between 1 and {MAX_PARTS}")
        return self.presigner.presign(
            "PUT",
            key,
            expires_in=expires_in,
            params=[("uploadId", upload_id), ("partNumber", str(part_number))],
        )

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """Uploaded parts, in order (paginated)."""
        paginator = self.client.get_paginator("list_parts")
        parts: list[PartInfo] = []
        with _MapErrors("list parts"):
            async for page in paginator.paginate(Bucket=self._bucket, Key=key, UploadId=upload_id):
                parts.extend(
                    PartInfo(
                        part_number=int(p["PartNumber"]),
                        size=int(p.get("Size", 0)),
                        etag=_strip_etag(p.get("ETag")),
                    )
                    for p in page.get("Parts", [])
                )
        return sorted(parts, key=lambda p: p.part_number)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo]
    ) -> ObjectInfo:
        """Join the parts; never overwrites (``ObjectExists``, the upload stays)."""
        if not parts:
            raise InvalidPart("no parts to complete")
        await self._raise_if_exists(key)
        await self._complete(key, upload_id, parts)
        info = await self.head(key)
        if info is None:
            raise StorageError("the completed object is not visible")
        return info

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort an upload; absent is fine."""
        try:
            with _MapErrors("abort multipart"):
                await self.client.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                )
        except ObjectNotFound:
            return

    async def list_multipart_uploads(self, prefix: str) -> AsyncIterator[MultipartUploadInfo]:
        """Incomplete multipart uploads under ``prefix``."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        with _MapErrors("list multipart uploads", not_found=False):
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Uploads", []):
                    yield MultipartUploadInfo(
                        key=item["Key"],
                        upload_id=item["UploadId"],
                        initiated=item.get("Initiated"),
                    )

    async def check(self) -> None:
        """HeadBucket: raise ``StorageError`` when the bucket is unreachable."""
        try:
            with _MapErrors("check bucket", not_found=False):
                await self.client.head_bucket(Bucket=self._bucket)
        except RuntimeError as exc:
            raise StorageError("storage is not started") from exc
