"""HTTP endpoints behind ``LocalStore``'s presigned URLs (mounted only for that backend).

They mirror what S3 does for presigned requests: ranged, conditional GET/HEAD of
objects, single PUTs bound to a content type and length that never overwrite, and
part uploads answering with the part's ETag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import format_datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import ClientDisconnect

from vidlib.storage.base import MAX_PARTS, MIB, ObjectExists, ObjectInfo, ObjectNotFound
from vidlib.storage.local import LocalObject, LocalStore, SignatureError

# S3's limits for one part and for a single PUT; the local store keeps them.
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_SINGLE_PUT = 5 * 1024 * MIB
STREAM_CHUNK = 256 * 1024


class _BodyError(Exception):
    """The request body does not match its declared Content-Length."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _Unsatisfiable(Exception):
    """The Range header asks for bytes the object does not have."""


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header selects; ``None``: the whole object."""
    # None also for syntax we ignore (RFC 9110 allows it) and for several ranges;
    # _Unsatisfiable means 416.
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not (first.isascii() and last.isascii()):
        return None
    if not first:
        if not last.isdigit():
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - suffix), size - 1
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _Unsatisfiable
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match comparison (weak, as RFC 9110 requires for it)."""
    if header.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags


def _object_headers(info: ObjectInfo, etag: str) -> dict[str, str]:
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Type": info.content_type or "application/octet-stream",
    }
    if info.last_modified is not None:
        headers["Last-Modified"] = format_datetime(info.last_modified, usegmt=True)
    return headers


async def _stream(obj: LocalObject, start: int, end: int) -> AsyncIterator[bytes]:
    try:
        async for chunk in obj.iter(start, end, chunk_size=STREAM_CHUNK):
            yield chunk
    finally:
        obj.close()


async def _exact_body(request: Request, length: int) -> AsyncIterator[bytes]:
    """The request body, refused beyond or short of the declared length."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > length:
            raise _BodyError(413, "The body is larger than its Content-Length.")
        if chunk:
            yield chunk
    if received != length:
        raise _BodyError(400, "The body is shorter than its Content-Length.")


def _content_length(request: Request, limit: int) -> int | JSONResponse:
    raw = request.headers.get("content-length")
    if raw is None:
        return _error(411, "Content-Length is required.")
    if not (raw.isascii() and raw.isdigit()):
        return _error(400, "Content-Length is invalid.")
    length = int(raw)
    if length > limit:
        return _error(413, "The body is too large.")
    return length


def build_local_storage_router(store: LocalStore) -> APIRouter:
    """Routes serving ``store``'s presigned URLs under ``/storage``."""
    router = APIRouter(include_in_schema=False)

    # Declared before the catch-all key routes, which would otherwise match it.
    @router.put("/storage/_multipart/{upload_id}/{part_number}")
    async def put_part(upload_id: str, part_number: str, request: Request) -> Response:
        """Receive one part of a multipart upload."""
        if not (part_number.isascii() and part_number.isdigit()):
            return _error(404, "Not found.")
        number = int(part_number)
        if not 1 <= number <= MAX_PARTS:
            return _error(404, "Not found.")
        query = request.query_params
        try:
            store.verify_part(upload_id, number, query.get("expires"), query.get("signature"))
        except SignatureError as exc:
            return _error(403, str(exc))
        length = _content_length(request, MAX_PART_SIZE)
        if isinstance(length, JSONResponse):
            return length
        try:
            part = await store.write_part(upload_id, number, _exact_body(request, length))
        except ObjectNotFound:
            return _error(404, "The multipart upload does not exist.")
        except _BodyError as exc:
            return _error(exc.status, exc.detail)
        except ClientDisconnect:
            return _error(400, "The upload was interrupted.")
        return Response(status_code=200, headers={"ETag": f'"{part.etag}"'})

    @router.api_route("/storage/{key:path}", methods=["GET", "HEAD"])
    async def get_object(key: str, request: Request) -> Response:
        """Serve an object (ranges, conditional requests) to a presigned URL."""
        query = request.query_params
        try:
            store.verify_get(key, query.get("expires"), query.get("signature"))
        except SignatureError as exc:
            return _error(403, str(exc))
        try:
            obj = await store.open_object(key)
        except (ObjectNotFound, ValueError):
            return _error(404, "Not found.")
        info = obj.info
        etag = f'"{info.etag}"'
        headers = _object_headers(info, etag)
        try:
            inm = request.headers.get("if-none-match")
            if inm is not None and _etag_matches(inm, etag):
                obj.close()
                return Response(status_code=304, headers={"ETag": etag})
            range_header = request.headers.get("range")
            if_range = request.headers.get("if-range")
            if if_range is not None and if_range.strip() != etag:
                range_header = None  # the client's copy is stale: send it all
            try:
                selected = parse_range(range_header, info.size)
            except _Unsatisfiable:
                obj.close()
                return _error(
                    416, "The range is not satisfiable.", {"Content-Range": f"bytes */{info.size}"}
                )
            status = 200
            start, end = 0, info.size - 1
            if selected is not None:
                status = 206
                start, end = selected
                headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
            headers["Content-Length"] = str(max(0, end - start + 1))
            if request.method == "HEAD" or info.size == 0:
                obj.close()
                return Response(status_code=status, headers=headers)
        except BaseException:
            obj.close()
            raise
        return StreamingResponse(_stream(obj, start, end), status_code=status, headers=headers)

    @router.put("/storage/{key:path}")
    async def put_object(key: str, request: Request) -> Response:
        """Receive a presigned single upload; refuses to overwrite (412)."""
        length = _content_length(request, MAX_SINGLE_PUT)
        if isinstance(length, JSONResponse):
            return length
        content_type = request.headers.get("content-type", "")
        query = request.query_params
        try:
            store.verify_put(
                key,
                query.get("expires"),
                query.get("signature"),
                content_type=content_type,
                content_length=length,
            )
        except SignatureError as exc:
            return _error(403, str(exc))
        try:
            info = await store.put_stream(
                key, _exact_body(request, length), content_type=content_type
            )
        except ObjectExists:
            return _error(412, "An object already exists at this key.")
        except ValueError:
            return _error(400, "The key is invalid.")
        except _BodyError as exc:
            return _error(exc.status, exc.detail)
        except ClientDisconnect:
            return _error(400, "The upload was interrupted.")
        return Response(status_code=200, headers={"ETag": f'"{info.etag}"'})

    return router
