"""``POST /api/v1/upload/video``: streamed uploads on every database and store."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import SessionTransaction

from tests.uploads.conftest import (
    TEST_POLICY,
    Caller,
    assert_nothing_left,
    chunked,
    fetch,
    form,
    mp4_bytes,
    new_user,
    pending_multipart,
    stored_keys,
)
from vidlib.storage.base import MIB, ObjectInfo, ObjectStore, StorageError
from vidlib.uploads.dependencies import get_upload_policy, get_upload_service
from vidlib.uploads.errors import UploadInterrupted
from vidlib.uploads.models import Upload
from vidlib.uploads.service import UploadService
from vidlib.videos.models import Video
from vidlib.videos.repository import VideoRepository

URL = "/api/v1/upload/video"
WEBM_HEAD = (
    b"\x1a\x45\xdf\xa3\x9f"
    b"\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
    b"\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02"
)


async def upload(
    client: httpx.AsyncClient,
    caller: Caller,
    data: bytes,
    filename: str = "clip.mp4",
    **kwargs: Any,
) -> httpx.Response:
    body, headers = form(data, filename, **kwargs)
    return await client.post(URL, content=chunked(body), headers={**caller.headers, **headers})


async def test_round_trip_through_the_returned_url(
    client: httpx.AsyncClient, app: FastAPI, store: ObjectStore, user: Caller
) -> None:
    data = mp4_bytes(11 * MIB + 123)  # three 5 MiB parts
    resp = await upload(client, user, data, "My Holiday.mp4")
    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["deduplicated"] is False
    video = body["video"]
    assert video["status"] == "processing"
    assert video["content_type"] == "video/mp4"
    assert video["file_size"] == len(data)
    assert video["filename"] == "my_holiday.mp4"
    assert video["original_filename"] == "My Holiday.mp4"
    assert re.fullmatch(
        rf"uploads/users/{user.id}/videos/\d{{10}}_my_holiday\.mp4", video["s3_key"]
    )

    whole = await fetch(client, video["s3_url"])
    assert whole.status_code == 200
    assert whole.content == data
    ranged = await fetch(client, video["s3_url"], {"Range": "bytes=1000-1999"})
    assert ranged.status_code == 206
    assert ranged.content == data[1000:2000]

    async with app.state.sessionmaker() as session:
        row = (await session.scalars(select(Upload))).one()
        stored = (await session.scalars(select(Video))).one()
    assert str(row.id) == body["upload_id"]
    assert (row.method, row.status, row.video_id) == ("stream", "completed", stored.id)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.s3_bucket == store.bucket
    assert stored.s3_url == store.object_url(stored.s3_key)
    assert await stored_keys(store) == [stored.s3_key]
    assert await pending_multipart(store) == []
    listed = await client.get("/api/v1/videos/s3-videos", headers=user.headers)
    assert listed.json()["total_count"] == 1

    # The type comes from the content, not the name; names are cleaned.
    webm = WEBM_HEAD + b"\x00" * 5000
    resp = await upload(client, user, webm, "../../Été à la plage.mp4")
    assert resp.status_code == 201, resp.text
    video = resp.json()["video"]
    assert video["content_type"] == "video/webm"
    assert video["filename"] == "ete_a_la_plage.webm"
    assert video["original_filename"] == "Été à la plage.mp4"
    assert video["s3_key"].endswith("_ete_a_la_plage.webm")


async def test_dedupe_per_user_and_same_names(
    client: httpx.AsyncClient,
    app: FastAPI,
    store: ObjectStore,
    user: Caller,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = mp4_bytes(300_000)
    first = await upload(client, user, data, "a.mp4")
    assert first.status_code == 201, first.text
    again = await upload(client, user, data, "b.mp4")
    assert again.status_code == 200, again.text
    assert again.json()["deduplicated"] is True
    assert again.json()["video"]["id"] == first.json()["video"]["id"]
    assert again.json()["upload_id"] != first.json()["upload_id"]
    assert len(await stored_keys(store)) == 1

    other = await new_user(app)
    theirs = await upload(client, other, data, "a.mp4")
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["deduplicated"] is False
    assert theirs.json()["video"]["id"] != first.json()["video"]["id"]
    assert len(await stored_keys(store)) == 2

    # A race lost between the check and the insert: the unique (user, sha256) index
    # refuses the second live copy, and the upload turns into a dedupe.
    real_lookup = VideoRepository.get_live_by_sha256
    lookups = 0

    async def blind_once(self: VideoRepository, user_id: uuid.UUID, sha256: str) -> Video | None:
        nonlocal lookups
        lookups += 1
        return None if lookups == 1 else await real_lookup(self, user_id, sha256)

    with monkeypatch.context() as patch:
        patch.setattr(VideoRepository, "get_live_by_sha256", blind_once)
        late = await upload(client, user, data, "late.mp4")
    assert late.status_code == 200, late.text
    assert (late.json()["deduplicated"], lookups) == (True, 2)
    assert late.json()["video"]["id"] == first.json()["video"]["id"]
    assert len(await stored_keys(store, f"uploads/users/{user.id}/")) == 1

    # Uploads of the same name in the same second never overwrite one another.
    frozen = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    state = app.state
    app.dependency_overrides[get_upload_service] = lambda: UploadService(
        sessionmaker=state.sessionmaker, store=state.store, policy=TEST_POLICY, clock=lambda: frozen
    )
    blobs = [mp4_bytes(200_000) for _ in range(3)]
    responses = await asyncio.gather(*(upload(client, user, b, "same.mp4") for b in blobs))
    assert [r.status_code for r in responses] == [201, 201, 201], [r.text for r in responses]
    keys = sorted(r.json()["video"]["s3_key"] for r in responses)
    prefix = f"uploads/users/{user.id}/videos/{int(frozen.timestamp())}_same"
    assert keys == [f"{prefix}.mp4", f"{prefix}_2.mp4", f"{prefix}_3.mp4"]
    for resp, blob in zip(responses, blobs, strict=True):
        assert (await fetch(client, resp.json()["video"]["s3_url"])).content == blob
    assert sorted(await stored_keys(store, prefix)) == keys


async def test_rejections_leave_nothing(
    client: httpx.AsyncClient, app: FastAPI, store: ObjectStore, user: Caller
) -> None:
    not_video = await upload(client, user, b"hello, this is plain text" * 1000, "x.mp4")
    assert not_video.status_code == 415
    assert "not a supported video" in not_video.json()["detail"]

    empty = await upload(client, user, b"", "empty.mp4")
    assert empty.status_code == 422
    assert empty.json() == {"detail": "The file is empty."}

    no_file = await upload(client, user, mp4_bytes(1000), field="video")
    assert no_file.status_code == 422
    assert "'file'" in no_file.json()["detail"]

    not_form = await client.post(URL, json={"file": "x"}, headers=user.headers)
    assert not_form.status_code == 422

    body, headers = form(mp4_bytes(2 * MIB))
    truncated = await client.post(
        URL, content=chunked(body[: len(body) - 10]), headers={**user.headers, **headers}
    )
    assert truncated.status_code == 422, truncated.text
    garbage = await client.post(
        URL,
        content=b"--b\r\nnot a header line\r\n\r\nxx",
        headers={**user.headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert garbage.status_code == 422, garbage.text

    # Over the limit once parts are already in storage: the multipart upload is aborted.
    app.dependency_overrides[get_upload_policy] = lambda: replace(TEST_POLICY, max_bytes=6 * MIB)
    too_big = await upload(client, user, mp4_bytes(6 * MIB + 1))
    assert too_big.status_code == 413, too_big.text
    assert "6 MiB" in too_big.json()["detail"]
    # Announced too large: refused before reading.
    body, headers = form(mp4_bytes(7 * MIB))
    announced = await client.post(URL, content=body, headers={**user.headers, **headers})
    assert announced.status_code == 413

    unauthenticated = await client.post(URL, content=body, headers=headers)
    assert unauthenticated.status_code == 401
    await assert_nothing_left(app, store)

    schema = (await client.get("/openapi.json")).json()
    request_body = schema["paths"][URL]["post"]["requestBody"]
    file_field = request_body["content"]["multipart/form-data"]["schema"]["properties"]["file"]
    assert file_field["format"] == "binary"


class FailingStore:
    """The real store, except that ``put_stream`` fails after ``fail_after`` bytes."""

    def __init__(self, inner: ObjectStore, fail_after: int) -> None:
        self.inner = inner
        self.fail_after = fail_after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], **kwargs: Any) -> ObjectInfo:
        async def failing() -> AsyncIterator[bytes]:
            sent = 0
            async for chunk in chunks:
                sent += len(chunk)
                if sent > self.fail_after:
                    raise StorageError("injected failure")
                yield chunk

        return await self.inner.put_stream(key, failing(), **kwargs)


async def test_storage_failure_or_disconnect_mid_upload_leaves_nothing(
    client: httpx.AsyncClient, app: FastAPI, store: ObjectStore, user: Caller
) -> None:
    app.state.store = FailingStore(store, fail_after=6 * MIB)  # after the first part
    try:
        resp = await upload(client, user, mp4_bytes(7 * MIB))
    finally:
        app.state.store = store
    assert resp.status_code == 503, resp.text
    await assert_nothing_left(app, store)

    # The client goes away after a part is in storage.
    body, headers = form(mp4_bytes(7 * MIB))

    async def cut_off() -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in chunked(body):
            yield chunk
            sent += len(chunk)
            if sent > 6 * MIB:  # a part is already in storage
                raise UploadInterrupted()

    service = UploadService(sessionmaker=app.state.sessionmaker, store=store, policy=TEST_POLICY)
    with pytest.raises(UploadInterrupted):
        await service.upload_stream(
            user_id=user.id, body=cut_off(), content_type=headers["Content-Type"]
        )
    await assert_nothing_left(app, store)


async def test_database_failure_after_the_object_is_written_leaves_nothing(
    client: httpx.AsyncClient,
    app: FastAPI,
    store: ObjectStore,
    user: Caller,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken_add(self: VideoRepository, video: Video) -> Video:
        raise OperationalError("INSERT INTO videos", {}, Exception("database went away"))

    with monkeypatch.context() as patch:
        patch.setattr(VideoRepository, "add", broken_add)
        resp = await upload(client, user, mp4_bytes(200_000))
    assert resp.status_code == 503, resp.text
    assert "database" not in resp.text.lower()
    await assert_nothing_left(app, store)

    # The commit itself failing, after the rows were flushed.
    real_commit = SessionTransaction.commit

    def failing_commit(self: SessionTransaction, _to_root: bool = False) -> None:
        if any(isinstance(obj, Video) for obj in self.session.identity_map.values()):
            raise OperationalError("COMMIT", {}, Exception("connection lost"))
        real_commit(self, _to_root)

    with monkeypatch.context() as patch:
        patch.setattr(SessionTransaction, "commit", failing_commit)
        resp = await upload(client, user, mp4_bytes(100_000))
    assert resp.status_code == 503, resp.text
    await assert_nothing_left(app, store)
