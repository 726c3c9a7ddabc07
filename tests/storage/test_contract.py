"""The ObjectStore contract, run against the local store and S3 (SeaweedFS) alike."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from vidlib.storage.base import (
    MIB,
    InvalidPart,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
)
from vidlib.storage.local import LocalStore
from vidlib.storage.s3 import S3Store

PART = 5 * MIB


async def chunked(data: bytes, size: int = MIB) -> AsyncIterator[bytes]:
    """``data`` as an async stream of ``size``-byte chunks."""
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def keys_under(store: ObjectStore, prefix: str) -> list[str]:
    return [o.key async for o in store.list(prefix)]


async def uploads_under(store: ObjectStore, prefix: str) -> list[str]:
    return [u.upload_id async for u in store.list_multipart_uploads(prefix)]


async def assert_nothing_left(store: ObjectStore, prefix: str) -> None:
    """No object, no multipart upload and (locally) no temporary file under ``prefix``."""
    assert await keys_under(store, prefix) == []
    assert await uploads_under(store, prefix) == []
    if isinstance(store, LocalStore):
        leftovers = [os.path.join(d, f) for d, _, files in os.walk(store.root) for f in files]
        assert leftovers == []


def expired_get_url(store: ObjectStore, key: str) -> str:
    """A GET URL that expired an hour ago, signed correctly otherwise."""
    past = time.time() - 3600
    if isinstance(store, S3Store):
        return store.presigner.presign("GET", key, expires_in=60, now=past)
    with mock.patch("vidlib.storage.local.time.time", return_value=past):
        return store.presign_get(key, expires_in=60)


def tamper(url: str) -> str:
    """Flip the last character of the signature."""
    last = url[-1]
    return url[:-1] + ("0" if last != "0" else "1")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


# -- writes ---------------------------------------------------------------------------


async def test_put_stream_small_is_one_object(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}small.mp4"
    data = os.urandom(300 * 1024)
    info = await store.put_stream(key, chunked(data, 64 * 1024), content_type="video/mp4")
    assert (info.key, info.size, info.etag) == (key, len(data), md5(data))
    head = await store.head(key)
    assert head is not None
    assert (head.size, head.etag, head.content_type) == (len(data), md5(data), "video/mp4")
    assert head.last_modified is not None
    assert await store.get_range(key, 0) == data
    assert await uploads_under(store, prefix) == []


async def test_put_stream_multipart(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}big.mp4"
    data = os.urandom(12 * MIB + 12345)  # three parts of 5 MiB, the last one short
    info = await store.put_stream(key, chunked(data), content_type="video/mp4", part_size=PART)
    assert info.size == len(data)
    head = await store.head(key)
    assert head is not None
    assert head.size == len(data)
    assert head.content_type == "video/mp4"
    if isinstance(store, S3Store):
        assert head.etag.endswith("-3")  # S3's multipart ETag: three parts
    else:
        assert head.etag == md5(data)
    assert await store.get_range(key, 0) == data
    assert await uploads_under(store, prefix) == []


async def test_put_stream_exactly_one_part_is_a_single_put(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}exact.bin"
    data = os.urandom(PART)
    info = await store.put_stream(key, chunked(data), content_type="x/y", part_size=PART)
    assert info.etag == md5(data)  # not a multipart ETag
    assert await store.get_range(key, 0) == data


async def test_put_stream_never_overwrites(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}once.bin"
    await store.put_stream(key, chunked(b"first"), content_type="text/plain")
    with pytest.raises(ObjectExists):
        await store.put_stream(key, chunked(b"second"), content_type="text/plain")
    assert await store.get_range(key, 0) == b"first"


async def test_put_stream_empty(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}empty"
    info = await store.put_stream(key, chunked(b""), content_type="text/plain")
    assert info.size == 0
    head = await store.head(key)
    assert head is not None
    assert head.size == 0
    assert await store.get_range(key, 0) == b""


async def test_put_bytes_overwrites(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}thumb.jpg"
    first = await store.put_bytes(key, b"one", content_type="image/jpeg")
    assert first.etag == md5(b"one")
    second = await store.put_bytes(key, b"second", content_type="image/png")
    assert second.etag == md5(b"second")
    head = await store.head(key)
    assert head is not None
    assert (head.size, head.etag, head.content_type) == (6, md5(b"second"), "image/png")


async def test_head_missing_is_none(store: ObjectStore, prefix: str) -> None:
    assert await store.head(f"{prefix}nothing") is None


# -- reads ----------------------------------------------------------------------------


async def test_ranges(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}range.bin"
    data = bytes(range(256)) * 40
    await store.put_bytes(key, data, content_type="application/octet-stream")
    assert await store.get_range(key, 0, 0) == data[:1]
    assert await store.get_range(key, 10, 19) == data[10:20]
    assert await store.get_range(key, 100) == data[100:]
    assert await store.get_range(key, len(data) - 1) == data[-1:]
    assert await store.get_range(key, 5000, 10**9) == data[5000:]
    assert await store.get_range(key, len(data)) == b""
    chunks = [c async for c in store.iter_range(key, 1000, 4999, chunk_size=1024)]
    assert b"".join(chunks) == data[1000:5000]
    assert all(len(c) <= 1024 for c in chunks)
    assert b"".join([c async for c in store.iter_range(key)]) == data
    with pytest.raises(ValueError, match="range"):
        await store.get_range(key, 10, 5)


async def test_read_missing_raises(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ObjectNotFound):
        await store.get_range(f"{prefix}missing", 0)
    with pytest.raises(ObjectNotFound):
        _ = [c async for c in store.iter_range(f"{prefix}missing")]


async def test_delete_is_idempotent(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}a/b/c.txt"
    await store.put_bytes(key, b"x", content_type="text/plain")
    await store.delete(key)
    assert await store.head(key) is None
    await store.delete(key)
    await store.delete(f"{prefix}never-existed")
    # The key can be written again after a delete.
    await store.put_stream(key, chunked(b"again"), content_type="text/plain")
    assert await store.get_range(key, 0) == b"again"


async def test_list_by_prefix_paginates(store: ObjectStore, prefix: str) -> None:
    wanted = [f"{prefix}a/{i:02d}.txt" for i in range(7)] + [f"{prefix}a/z/deep.txt"]
    others = [f"{prefix}b/x.txt", f"{prefix}ab.txt"]
    for i, key in enumerate(wanted + others):
        await store.put_bytes(key, b"x" * i, content_type="text/plain")
    lister: Any = store  # both implementations take page_size
    listed = [o async for o in lister.list(f"{prefix}a/", page_size=3)]
    assert [o.key for o in listed] == sorted(wanted)
    assert [o.size for o in listed] == list(range(len(wanted)))
    assert all(o.etag for o in listed)
    assert await keys_under(store, f"{prefix}a") == sorted([*wanted, f"{prefix}ab.txt"])
    assert await keys_under(store, f"{prefix}nope/") == []


async def test_check(store: ObjectStore) -> None:
    await store.check()


# -- presigned URLs over real HTTP -----------------------------------------------------


async def test_presigned_get_over_http(
    store: ObjectStore, prefix: str, http: httpx.AsyncClient
) -> None:
    key = f"{prefix}dir with space/ünïcode+video.mp4"
    data = os.urandom(200_000)
    await store.put_bytes(key, data, content_type="video/mp4")
    url = store.presign_get(key, expires_in=300)

    resp = await http.get(url)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["content-type"] == "video/mp4"

    resp = await http.get(url, headers={"Range": "bytes=100-199"})
    assert resp.status_code == 206
    assert resp.content == data[100:200]
    assert resp.headers["content-range"] == f"bytes 100-199/{len(data)}"

    resp = await http.get(url, headers={"Range": "bytes=-10"})
    assert resp.status_code == 206
    assert resp.content == data[-10:]


async def test_presigned_get_expired_and_tampered_are_rejected(
    store: ObjectStore, prefix: str, http: httpx.AsyncClient
) -> None:
    key = f"{prefix}secret.mp4"
    other = f"{prefix}other.mp4"
    await store.put_bytes(key, b"secret", content_type="video/mp4")
    await store.put_bytes(other, b"other", content_type="video/mp4")

    assert (await http.get(expired_get_url(store, key))).status_code == 403
    url = store.presign_get(key, expires_in=300)
    assert (await http.get(tamper(url))).status_code == 403
    # A valid signature for one key does not open another.
    assert (await http.get(url.replace("secret.mp4", "other.mp4"))).status_code == 403
    assert (await http.get(url.split("?")[0])).status_code == 403
    assert (await http.get(url)).status_code == 200


async def test_presigned_put(store: ObjectStore, prefix: str, http: httpx.AsyncClient) -> None:
    key = f"{prefix}direct/upload.mp4"
    data = os.urandom(10_000)
    req = store.presign_put(key, content_type="video/mp4", content_length=len(data), expires_in=300)
    assert req.method == "PUT"
    assert req.headers["Content-Length"] == str(len(data))
    assert req.headers["If-None-Match"] == "*"
    assert req.expires_at is not None

    # Another size or another type does not match the signature.
    longer = data + b"!"
    wrong_len = {**req.headers, "Content-Length": str(len(longer))}
    assert (await http.put(req.url, content=longer, headers=wrong_len)).status_code == 403
    wrong_type = {**req.headers, "Content-Type": "text/html"}
    assert (await http.put(req.url, content=data, headers=wrong_type)).status_code == 403
    assert await store.head(key) is None

    resp = await http.put(req.url, content=data, headers=req.headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"].strip('"') == md5(data)
    head = await store.head(key)
    assert head is not None
    assert (head.size, head.content_type) == (len(data), "video/mp4")

    # The same URL cannot overwrite what it created.
    again = await http.put(req.url, content=data, headers=req.headers)
    assert again.status_code == 412
    assert await store.get_range(key, 0) == data


# -- multipart --------------------------------------------------------------------------


async def test_multipart_with_presigned_parts(
    store: ObjectStore, prefix: str, http: httpx.AsyncClient
) -> None:
    key = f"{prefix}multi/video.mov"
    part1, part2 = os.urandom(PART), os.urandom(123_456)
    upload_id = await store.create_multipart(key, content_type="video/quicktime")
    assert await uploads_under(store, prefix) == [upload_id]

    etags = []
    for number, body in ((1, part1), (2, part2)):
        url = store.presign_part(key, upload_id, number, expires_in=300)
        resp = await http.put(url, content=body)
        assert resp.status_code == 200, resp.text
        etags.append(resp.headers["etag"].strip('"'))
    assert etags == [md5(part1), md5(part2)]

    parts = await store.list_parts(key, upload_id)
    assert [(p.part_number, p.size, p.etag) for p in parts] == [
        (1, len(part1), md5(part1)),
        (2, len(part2), md5(part2)),
    ]

    info = await store.complete_multipart(key, upload_id, parts)
    assert info.size == len(part1) + len(part2)
    head = await store.head(key)
    assert head is not None
    assert head.content_type == "video/quicktime"
    assert await store.get_range(key, 0) == part1 + part2
    assert await uploads_under(store, prefix) == []


async def test_part_url_is_bound_to_its_signature(
    store: ObjectStore, prefix: str, http: httpx.AsyncClient
) -> None:
    key = f"{prefix}multi/x.bin"
    upload_id = await store.create_multipart(key, content_type="application/octet-stream")
    url = store.presign_part(key, upload_id, 1, expires_in=300)
    assert (await http.put(tamper(url), content=b"x")).status_code == 403
    other_part = url.replace("partNumber=1", "partNumber=2").replace("/1?", "/2?")
    assert (await http.put(other_part, content=b"x")).status_code == 403
    assert await store.list_parts(key, upload_id) == []
    await store.abort_multipart(key, upload_id)


async def test_complete_rejects_a_wrong_part_list(
    store: ObjectStore, prefix: str, http: httpx.AsyncClient
) -> None:
    key = f"{prefix}multi/bad.bin"
    upload_id = await store.create_multipart(key, content_type="application/octet-stream")
    for number in (1, 2):
        url = store.presign_part(key, upload_id, number, expires_in=300)
        assert (await http.put(url, content=b"tiny")).status_code == 200
    parts = await store.list_parts(key, upload_id)
    with pytest.raises(InvalidPart):  # a non-final part under 5 MiB
        await store.complete_multipart(key, upload_id, parts)
    with pytest.raises(InvalidPart):  # an ETag that is not the stored one
        await store.complete_multipart(key, upload_id, [PartInfo(1, 4, "0" * 32)])
    await store.abort_multipart(key, upload_id)
    assert await store.head(key) is None


async def test_complete_never_overwrites(
    store: ObjectStore, prefix: str, http: httpx.AsyncClient
) -> None:
    key = f"{prefix}multi/taken.bin"
    await store.put_bytes(key, b"existing", content_type="text/plain")
    upload_id = await store.create_multipart(key, content_type="text/plain")
    url = store.presign_part(key, upload_id, 1, expires_in=300)
    assert (await http.put(url, content=b"new")).status_code == 200
    parts = await store.list_parts(key, upload_id)
    with pytest.raises(ObjectExists):
        await store.complete_multipart(key, upload_id, parts)
    assert await store.get_range(key, 0) == b"existing"
    await store.abort_multipart(key, upload_id)


async def test_abort_removes_upload_and_parts(
    store: ObjectStore, prefix: str, http: httpx.AsyncClient
) -> None:
    key = f"{prefix}multi/aborted.bin"
    upload_id = await store.create_multipart(key, content_type="application/octet-stream")
    url = store.presign_part(key, upload_id, 1, expires_in=300)
    assert (await http.put(url, content=b"part")).status_code == 200
    assert len(await store.list_parts(key, upload_id)) == 1

    await store.abort_multipart(key, upload_id)
    assert await uploads_under(store, prefix) == []
    with pytest.raises(ObjectNotFound):
        await store.list_parts(key, upload_id)
    await store.abort_multipart(key, upload_id)  # absent is fine
    # A part URL for an aborted upload no longer stores anything.
    assert (await http.put(url, content=b"late")).status_code == 404
    await assert_nothing_left(store, prefix)


# -- nothing left behind ---------------------------------------------------------------


async def test_cancelled_put_stream_leaves_nothing(store: ObjectStore, prefix: str) -> None:
    key = f"{prefix}cancelled.mp4"
    stalled = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        for _ in range(6):  # more than one 5 MiB part: a multipart upload is under way
            yield os.urandom(MIB)
        stalled.set()
        await asyncio.Event().wait()  # the client stops sending, forever
        yield b""  # pragma: no cover

    task = asyncio.ensure_future(
        store.put_stream(key, source(), content_type="video/mp4", part_size=PART)
    )
    await asyncio.wait_for(stalled.wait(), timeout=10)
    if isinstance(store, S3Store):
        deadline = time.monotonic() + 10
        while not await uploads_under(store, prefix):
            assert time.monotonic() < deadline, "the multipart upload never started"
            await asyncio.sleep(0.02)
    else:
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_nothing_left(store, prefix)


@pytest.mark.parametrize("fail_after", [2 * MIB, 11 * MIB])
async def test_failing_source_leaves_nothing(
    store: ObjectStore, prefix: str, fail_after: int
) -> None:
    key = f"{prefix}broken.mp4"

    async def source() -> AsyncIterator[bytes]:
        for _ in range(fail_after // MIB):
            yield os.urandom(MIB)
        raise RuntimeError("the client went away")

    with pytest.raises(RuntimeError, match="went away"):
        await store.put_stream(key, source(), content_type="video/mp4", part_size=PART)
    await assert_nothing_left(store, prefix)


async def test_existing_key_fails_before_reading_the_stream(
    store: ObjectStore, prefix: str
) -> None:
    key = f"{prefix}exists.bin"
    await store.put_bytes(key, b"x", content_type="text/plain")
    pulled = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield b"data"

    with pytest.raises(ObjectExists):
        await store.put_stream(key, source(), content_type="text/plain")
    assert pulled == 0


async def test_read_urls_are_reused_within_a_window_and_stay_valid(
    store: ObjectStore, prefix: str, http: httpx.AsyncClient
) -> None:
    """The same key gets the same URL within the window (app caches key on the URL),
    a new one after it, and every one of them opens the object."""
    key = f"{prefix}memo.mp4"
    await store.put_bytes(key, b"frames", content_type="video/mp4")
    start = 1_900_000_020  # a window boundary for a 300 s lifetime (30 s windows)
    with mock.patch("vidlib.storage.base.time.time", return_value=start + 1.5):
        first = store.presign_get(key, expires_in=300)
        assert store.presign_get(key, expires_in=300) == first
        other = store.presign_get(f"{prefix}other.mp4", expires_in=300)
        assert other != first
    with mock.patch("vidlib.storage.base.time.time", return_value=start + 29.9):
        assert store.presign_get(key, expires_in=300) == first
    with mock.patch("vidlib.storage.base.time.time", return_value=start + 30.0):
        later = store.presign_get(key, expires_in=300)
    assert later != first
    # Signed as of the window start, for the full lifetime from there.
    query = dict(parse_qsl(urlsplit(later).query))
    if "expires" in query:
        assert int(query["expires"]) == start + 30 + 300
    else:
        assert query["X-Amz-Date"] == time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start + 30))
        assert query["X-Amz-Expires"] == "300"
    # URLs issued now work (the mocked ones lie in the future of the real clock).
    now_url = store.presign_get(key, expires_in=300)
    assert (await http.get(now_url)).content == b"frames"
    assert store.presign_get(key, expires_in=300) == now_url
    # Very short lifetimes are never reused (no room for a window).
    assert store.presign_get(key, expires_in=15) is not None
