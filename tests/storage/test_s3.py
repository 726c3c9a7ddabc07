"""S3Store specifics: bounded uploads, error mapping, configuration, the factory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.seaweed import S3Server, create_bucket
from vidlib.config import Settings
from vidlib.storage import open_store
from vidlib.storage.base import MIB, ObjectExists, PartInfo, StorageError
from vidlib.storage.local import LocalStore
from vidlib.storage.s3 import S3Store

PART = 5 * MIB


async def test_put_stream_bounds_parts_in_flight_and_read_ahead(
    s3_store: S3Store, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"{prefix}bounded.bin"
    original = s3_store._upload_part
    running = 0
    max_running = 0
    finished = 0
    produced = 0
    max_ahead = 0

    async def slow_upload(key: str, upload_id: str, number: int, data: bytes) -> PartInfo:
        nonlocal running, max_running, finished
        running += 1
        max_running = max(max_running, running)
        try:
            await asyncio.sleep(0.05)
            return await original(key, upload_id, number, data)
        finally:
            running -= 1
            finished += 1

    async def source() -> AsyncIterator[bytes]:
        nonlocal produced, max_ahead
        for _ in range(30):  # 30 MiB: 6 parts
            produced += MIB
            max_ahead = max(max_ahead, produced - finished * PART)
            yield os.urandom(MIB)

    monkeypatch.setattr(s3_store, "_upload_part", slow_upload)
    info = await s3_store.put_stream(key, source(), content_type="x/y", part_size=PART)
    assert info.size == 30 * MIB
    assert max_running == 2
    # Bytes read but not yet stored: two parts in flight plus the one being filled.
    assert max_ahead <= 3 * PART + MIB
    head = await s3_store.head(key)
    assert head is not None
    assert head.etag.endswith("-6")


async def test_part_size_below_the_s3_minimum_is_refused(s3_store: S3Store, prefix: str) -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"x"

    with pytest.raises(ValueError, match="part_size"):
        await s3_store.put_stream(f"{prefix}x", source(), content_type="x/y", part_size=MIB)


async def test_unreachable_endpoint_is_a_storage_error() -> None:
    # Port 9 (discard) on loopback: nothing listens, connections are refused at once.
    async with S3Store(
        "bucket",
        endpoint_url="http://127.0.0.1:9",
        access_key="a",
        secret_key="b",
        max_attempts=1,
        connect_timeout=1,
    ) as store:
        with pytest.raises(StorageError) as info:
            await store.check()
        assert "127.0.0.1" not in str(info.value)
        with pytest.raises(StorageError):
            await store.head("k")
        # Presigning needs no network.
        assert store.presign_get("k", expires_in=60).startswith("http://127.0.0.1:9/bucket/k?")


async def test_missing_bucket_fails_the_check(seaweedfs: S3Server) -> None:
    async with S3Store(
        "no-such-bucket-here",
        endpoint_url=seaweedfs.endpoint_url,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
    ) as store:
        with pytest.raises(StorageError):
            await store.check()


async def test_public_base_url_serves_gets_unsigned(seaweedfs: S3Server, s3_bucket: str) -> None:
    async with S3Store(
        s3_bucket,
        endpoint_url=seaweedfs.endpoint_url,
        public_base_url="https://cdn.example.com/media/",
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
    ) as store:
        url = store.presign_get("users/1/a b.mp4", expires_in=60)
        assert url == "https://cdn.example.com/media/users/1/a%20b.mp4"
        assert store.object_url("k") == "https://cdn.example.com/media/k"
        # Uploads still go to the bucket itself, signed.
        put = store.presign_part("k", "id", 1, expires_in=60)
        assert put.startswith(f"{seaweedfs.endpoint_url}/{s3_bucket}/k?uploadId=id&partNumber=1&")


async def test_object_url_without_cdn(s3_store: S3Store) -> None:
    assert s3_store.object_url("a/b c") == (f"{s3_store.presigner.base_url}a/b%20c")


async def test_head_check_refuses_before_conditional_write(s3_store: S3Store, prefix: str) -> None:
    key = f"{prefix}k"
    await s3_store.put_bytes(key, b"1", content_type="text/plain")
    s3_store._conditional_writes = False
    try:
        with pytest.raises(ObjectExists):
            await s3_store.put_stream(key, _one(b"2"), content_type="text/plain")
    finally:
        s3_store._conditional_writes = True


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_open_store_s3(
    seaweedfs: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    settings = Settings(
        data_dir=tmp_path,
        storage_backend="s3",
        s3_bucket=s3_bucket,
        s3_endpoint_url=seaweedfs.endpoint_url,
        s3_region=seaweedfs.region,
        jwt_secret="x" * 40,
    )
    store = await open_store(settings)
    try:
        assert isinstance(store, S3Store)
        assert store.bucket == s3_bucket
        await store.check()
    finally:
        await store.close()


async def test_open_store_local(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://videos.example.com/")
    store = await open_store(settings)
    try:
        assert isinstance(store, LocalStore)
        assert store.bucket == "local"
        assert store.root == settings.storage_dir.absolute()
        assert store.presign_get("k", expires_in=60).startswith(
            "https://videos.example.com/storage/k?expires="
        )
        await store.check()
    finally:
        await store.close()


async def test_create_bucket_helper(seaweedfs: S3Server) -> None:
    name = await create_bucket(seaweedfs)
    async with S3Store(
        name,
        endpoint_url=seaweedfs.endpoint_url,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
    ) as store:
        await store.check()
