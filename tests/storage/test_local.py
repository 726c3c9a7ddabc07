"""LocalStore specifics: key safety, atomic writes, and its HTTP endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.storage.conftest import LocalServer
from vidlib.storage.base import ObjectExists
from vidlib.storage.local import LocalStore, validate_key
from vidlib.storage.local_router import _Unsatisfiable, parse_range


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "a/../../outside",
        "a/./b",
        "a//b",
        "a/",
        "a\x00b",
        "a\\..\\b",
        ".multipart/0123",
        "_multipart/x/1",
        "dir/.~meta.x.json",
        "dir/.~tmp.123",
        "x" * 201,
    ],
)
async def test_unsafe_keys_are_rejected(local_store: LocalStore, key: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every message is fine
        validate_key(key)
    with pytest.raises(ValueError):  # noqa: PT011
        await local_store.put_bytes(key, b"x", content_type="text/plain")
    with pytest.raises(ValueError):  # noqa: PT011
        local_store.presign_get(key, expires_in=60)
    assert not (local_store.root.parent / "outside").exists()


@pytest.mark.parametrize("key", ["a", "a.b/c..d/e", "ü/ß ü.mp4", ".hidden/x", "a/.b"])
def test_ordinary_keys_are_accepted(key: str) -> None:
    assert validate_key(key) == key


async def test_files_land_where_the_key_says(local_store: LocalStore) -> None:
    await local_store.put_bytes("users/1/v.mp4", b"data", content_type="video/mp4")
    assert (local_store.root / "users" / "1" / "v.mp4").read_bytes() == b"data"


async def test_a_write_in_progress_is_invisible(local_store: LocalStore) -> None:
    release = asyncio.Event()
    written = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"x" * (2 * 1024 * 1024)
        written.set()
        await release.wait()
        yield b"end"

    task = asyncio.ensure_future(
        local_store.put_stream("dir/video.mp4", slow(), content_type="video/mp4")
    )
    await written.wait()
    await asyncio.sleep(0.05)
    assert await local_store.head("dir/video.mp4") is None
    assert [o async for o in local_store.list("")] == []
    names = os.listdir(local_store.root / "dir")
    assert len(names) == 1
    assert names[0].startswith(".~tmp.")
    release.set()
    info = await task
    assert info.size == 2 * 1024 * 1024 + 3
    assert [o.key async for o in local_store.list("")] == ["dir/video.mp4"]


async def test_racing_writers_cannot_overwrite(local_store: LocalStore) -> None:
    gate = asyncio.Event()

    async def body(tag: bytes) -> AsyncIterator[bytes]:
        await gate.wait()
        yield tag * 1000

    tasks = [
        asyncio.ensure_future(
            local_store.put_stream("race.bin", body(bytes([65 + i])), content_type="x/y")
        )
        for i in range(8)
    ]
    await asyncio.sleep(0.05)  # every writer is past its early existence check
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, ObjectExists) for r in results if r not in winners)
    stored = await local_store.get_range("race.bin", 0)
    assert hashlib.md5(stored, usedforsecurity=False).hexdigest() == winners[0].etag
    assert sorted(os.listdir(local_store.root)) == [".~meta.race.bin.json", "race.bin"]


async def test_stale_metadata_is_detected(local_store: LocalStore) -> None:
    await local_store.put_bytes("a.txt", b"old", content_type="text/plain")
    # Something rewrites the data file behind the store's back.
    path = local_store.root / "a.txt"
    tmp = path.with_name("replacement")
    tmp.write_bytes(b"newer")
    os.replace(tmp, path)
    head = await local_store.head("a.txt")
    assert head is not None
    assert head.etag == hashlib.md5(b"newer", usedforsecurity=False).hexdigest()
    assert head.size == 5
    assert head.content_type == "text/plain"


async def test_delete_prunes_empty_directories(local_store: LocalStore) -> None:
    await local_store.put_bytes("a/b/c/d.txt", b"x", content_type="text/plain")
    await local_store.put_bytes("a/keep.txt", b"x", content_type="text/plain")
    await local_store.delete("a/b/c/d.txt")
    assert not (local_store.root / "a" / "b").exists()
    assert (local_store.root / "a" / "keep.txt").exists()


async def test_list_ignores_internal_files(local_store: LocalStore) -> None:
    await local_store.put_bytes("x/1", b"1", content_type="text/plain")
    upload_id = await local_store.create_multipart("x/2", content_type="text/plain")
    assert [o.key async for o in local_store.list("")] == ["x/1"]
    assert [o.key async for o in local_store.list(".multipart/")] == []
    assert [u.upload_id async for u in local_store.list_multipart_uploads("x/")] == [upload_id]
    assert [u.upload_id async for u in local_store.list_multipart_uploads("y/")] == []


async def test_part_listing_requires_the_right_key(local_store: LocalStore) -> None:
    from vidlib.storage.base import ObjectNotFound

    upload_id = await local_store.create_multipart("k/1", content_type="text/plain")
    with pytest.raises(ObjectNotFound):
        await local_store.list_parts("k/2", upload_id)
    with pytest.raises(ObjectNotFound):
        await local_store.list_parts("k/1", "../../etc")
    await local_store.abort_multipart("k/2", upload_id)  # another key: not aborted
    assert await local_store.list_parts("k/1", upload_id) == []


# -- HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=0-1,4-5", 10, None),  # several ranges: the whole object
        ("items=0-1", 10, None),
        ("bytes=5-2", 10, None),
        ("bytes=abc", 10, None),
        ("bytes=\u0661-\u0662", 10, None),  # Arabic-Indic digits are not digits here
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(_Unsatisfiable):
        parse_range(header, size)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def test_get_headers_conditional_and_416(
    local_store: LocalStore, http: httpx.AsyncClient
) -> None:
    data = os.urandom(1000)
    info = await local_store.put_bytes("v/a.webm", data, content_type="video/webm")
    url = local_store.presign_get("v/a.webm", expires_in=60)
    etag = f'"{info.etag}"'

    resp = await http.get(url)
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["etag"] == etag
    assert resp.headers["content-type"] == "video/webm"
    assert resp.headers["content-length"] == "1000"
    assert "last-modified" in resp.headers

    head = await http.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == "1000"
    assert head.content == b""

    assert (await http.get(url, headers={"If-None-Match": etag})).status_code == 304
    assert (await http.get(url, headers={"If-None-Match": '"other"'})).status_code == 200

    resp = await http.get(url, headers={"Range": "bytes=2000-"})
    assert resp.status_code == 416
    assert resp.headers["content-range"] == "bytes */1000"
    assert resp.json() == {"detail": "The range is not satisfiable."}

    resp = await http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert resp.status_code == 200
    assert resp.content == data
    resp = await http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert resp.status_code == 206
    assert resp.content == data[:10]


async def test_get_error_bodies(local_store: LocalStore, http: httpx.AsyncClient) -> None:
    url = local_store.presign_get("missing.mp4", expires_in=60)
    resp = await http.get(url)
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Not found."}
    resp = await http.get(url.replace("signature=", "signature=x"))
    assert resp.status_code == 403
    assert resp.json() == {"detail": "The URL signature does not match."}
    resp = await http.get(url.replace("expires=", "expires=1"))
    assert resp.status_code == 403


async def test_large_object_streams_in_chunks(
    local_store: LocalStore, http: httpx.AsyncClient
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    await local_store.put_stream("big.bin", chunks(data), content_type="application/octet-stream")
    url = local_store.presign_get("big.bin", expires_in=60)
    received = bytearray()
    sizes = []
    async with http.stream("GET", url) as resp:
        async for chunk in resp.aiter_raw():
            sizes.append(len(chunk))
            received += chunk
    assert bytes(received) == data
    assert len(sizes) > 1


async def test_put_requires_content_length(
    local_store: LocalStore, http: httpx.AsyncClient
) -> None:
    req = local_store.presign_put("up.bin", content_type="x/y", content_length=3, expires_in=60)

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    resp = await http.put(req.url, content=body(), headers={"Content-Type": "x/y"})
    assert resp.status_code == 411
    assert await local_store.head("up.bin") is None


async def test_put_part_to_unknown_upload(
    local_store: LocalStore, local_server: LocalServer, http: httpx.AsyncClient
) -> None:
    upload_id = await local_store.create_multipart("m.bin", content_type="x/y")
    url = local_store.presign_part("m.bin", upload_id, 1, expires_in=60)
    await local_store.abort_multipart("m.bin", upload_id)
    assert (await http.put(url, content=b"x")).status_code == 404
    assert local_server.url in url


async def test_meta_survives_reopen(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, "http://x", b"s")
    await store.put_bytes("k", b"v", content_type="text/x-custom")
    again = LocalStore(tmp_path, "http://x", b"s")
    head = await again.head("k")
    assert head is not None
    assert head.content_type == "text/x-custom"
