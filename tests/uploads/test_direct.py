"""``/api/v1/upload/video/direct``: presigned uploads straight to storage."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.uploads.conftest import (
    Caller,
    chunked,
    fetch,
    form,
    mp4_bytes,
    new_user,
    pending_multipart,
    put,
    row_counts,
    stored_keys,
)
from vidlib.db.base import utcnow
from vidlib.storage.base import MIB, ObjectStore
from vidlib.uploads.models import Upload
from vidlib.videos.models import Video

URL = "/api/v1/upload/video/direct"


async def create(
    client: httpx.AsyncClient, caller: Caller, size: int, **extra: Any
) -> httpx.Response:
    body = {"filename": "Phone Clip.MP4", "content_type": "video/mp4", "file_size": size, **extra}
    return await client.post(URL, json=body, headers=caller.headers)


async def upload_row(app: FastAPI, upload_id: str) -> Upload:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with maker() as session:
        row = await session.get(Upload, uuid.UUID(upload_id))
    assert row is not None
    return row


async def test_single_put(
    client: httpx.AsyncClient, app: FastAPI, store: ObjectStore, user: Caller
) -> None:
    data = mp4_bytes(300_000)
    resp = await create(client, user, len(data), sha256=hashlib.sha256(data).hexdigest())
    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    session = resp.json()
    assert session["method"] == "PUT"
    assert session["expires_at"].endswith("Z")
    upload_id = session["upload_id"]

    state = (await client.get(f"{URL}/{upload_id}", headers=user.headers)).json()
    assert (state["status"], state["parts"], state["file_size"]) == ("pending", [], len(data))
    early = await client.post(f"{URL}/{upload_id}/complete", headers=user.headers)
    assert early.status_code == 409
    assert early.json() == {"detail": "The file has not been uploaded yet."}

    sent = await put(client, session["url"], data, session["headers"])
    assert sent.status_code == 200, sent.text
    state = (await client.get(f"{URL}/{upload_id}", headers=user.headers)).json()
    assert [p["size"] for p in state["parts"]] == [len(data)]

    done = await client.post(f"{URL}/{upload_id}/complete", headers=user.headers)
    assert done.status_code == 201, done.text
    result = done.json()
    assert result["upload_id"] == upload_id
    assert result["deduplicated"] is False
    video = result["video"]
    assert (video["status"], video["file_size"], video["filename"]) == (
        "processing",
        len(data),
        "phone_clip.mp4",
    )
    assert video["original_filename"] == "Phone Clip.MP4"
    assert (await fetch(client, video["s3_url"])).content == data

    again = await client.post(f"{URL}/{upload_id}/complete", headers=user.headers)
    assert again.status_code == 201
    assert again.json()["video"]["id"] == video["id"]
    state = (await client.get(f"{URL}/{upload_id}", headers=user.headers)).json()
    assert (state["status"], state["video_id"]) == ("completed", video["id"])
    async with app.state.sessionmaker() as db:
        stored = (await db.scalars(select(Video))).one()
    assert stored.sha256 is None  # the client's claim is not verified
    assert await row_counts(app) == {"videos": 1, "uploads": 1, "transcripts": 0}

    # A direct upload's hash is unverified, so it never becomes a dedupe target.
    dup = await create(client, user, len(data), sha256=hashlib.sha256(data).hexdigest())
    assert dup.status_code == 201

    other = await new_user(app)
    for method, path in (
        ("GET", f"{URL}/{upload_id}"),
        ("POST", f"{URL}/{upload_id}/complete"),
        ("DELETE", f"{URL}/{upload_id}"),
    ):
        resp = await client.request(method, path, headers=other.headers)
        assert resp.status_code == 404, (method, path)
        assert resp.json() == {"detail": "Upload not found."}
    parts = await client.post(
        f"{URL}/{upload_id}/parts", json={"part_numbers": [1]}, headers=other.headers
    )
    assert parts.status_code == 404

    # An object of the wrong size is cleared (the PUT cannot overwrite), then a
    # non-video is refused and deleted.
    resp = await create(client, user, 5000)
    upload_id = resp.json()["upload_id"]
    key = (await upload_row(app, upload_id)).s3_key
    await store.put_bytes(key, mp4_bytes(4000), content_type="video/mp4")
    short = await client.post(f"{URL}/{upload_id}/complete", headers=user.headers)
    assert short.status_code == 409
    assert "4000 bytes, not the 5000" in short.json()["detail"]
    assert await stored_keys(store, key) == []  # cleared so the PUT can be repeated

    text = b"not a video at all " * 300
    session = resp.json()
    sent = await put(client, session["url"], text[:5000], session["headers"])
    assert sent.status_code == 200, sent.text
    rejected = await client.post(f"{URL}/{upload_id}/complete", headers=user.headers)
    assert rejected.status_code == 415
    assert await stored_keys(store, key) == []
    state = (await client.get(f"{URL}/{upload_id}", headers=user.headers)).json()
    assert state["status"] == "aborted"
    assert (await row_counts(app))["videos"] == 1


async def test_multipart(
    client: httpx.AsyncClient, app: FastAPI, store: ObjectStore, user: Caller
) -> None:
    data = mp4_bytes(11 * MIB)
    resp = await create(client, user, len(data))
    assert resp.status_code == 201, resp.text
    session = resp.json()
    upload_id, part_size = session["upload_id"], session["part_size"]
    assert (session["method"], part_size, session["part_count"]) == ("multipart", 5 * MIB, 3)
    assert [p["part_number"] for p in session["parts"]] == [1, 2]  # the rest via /parts

    more = await client.post(
        f"{URL}/{upload_id}/parts", json={"part_numbers": [3]}, headers=user.headers
    )
    assert more.status_code == 200, more.text
    assert more.headers["cache-control"] == "no-store"
    urls = {p["part_number"]: p["url"] for p in [*session["parts"], *more.json()["parts"]]}
    bad = await client.post(
        f"{URL}/{upload_id}/parts", json={"part_numbers": [0, 4]}, headers=user.headers
    )
    assert bad.status_code == 422
    assert "between 1 and 3" in bad.json()["detail"]

    chunks = {n: data[(n - 1) * part_size : n * part_size] for n in (1, 2, 3)}
    etags = {}
    for n in (1, 3):
        sent = await put(client, urls[n], chunks[n])
        assert sent.status_code == 200, sent.text
        etags[n] = sent.headers["etag"]
    gap = await client.post(f"{URL}/{upload_id}/complete", headers=user.headers)
    assert gap.status_code == 409
    assert gap.json() == {"detail": "Parts missing from storage: 2."}

    state = (await client.get(f"{URL}/{upload_id}", headers=user.headers)).json()
    assert [(p["part_number"], p["size"]) for p in state["parts"]] == [
        (1, 5 * MIB),
        (3, len(data) - 10 * MIB),
    ]
    sent = await put(client, urls[2], chunks[2])
    etags[2] = sent.headers["etag"]
    wrong = await client.post(
        f"{URL}/{upload_id}/complete",
        json={"parts": [{"part_number": 1, "etag": '"0000"'}]},
        headers=user.headers,
    )
    assert wrong.status_code == 409
    assert "ETag" in wrong.json()["detail"]
    done = await client.post(
        f"{URL}/{upload_id}/complete",
        json={"parts": [{"part_number": n, "etag": etags[n]} for n in (1, 2, 3)]},
        headers=user.headers,
    )
    assert done.status_code == 201, done.text
    video = done.json()["video"]
    assert video["file_size"] == len(data)
    assert (await fetch(client, video["s3_url"])).content == data
    assert await pending_multipart(store) == []
    assert await stored_keys(store) == [video["s3_key"]]


async def test_abort_expiry_validation_and_dedupe(
    client: httpx.AsyncClient, app: FastAPI, store: ObjectStore, user: Caller
) -> None:
    resp = await create(client, user, 8 * MIB)
    session = resp.json()
    upload_id = session["upload_id"]
    sent = await put(client, session["parts"][0]["url"], mp4_bytes(5 * MIB))
    assert sent.status_code == 200
    assert len(await pending_multipart(store)) == 1
    aborted = await client.delete(f"{URL}/{upload_id}", headers=user.headers)
    assert aborted.status_code == 204
    assert await pending_multipart(store) == []
    assert await stored_keys(store) == []
    state = (await client.get(f"{URL}/{upload_id}", headers=user.headers)).json()
    assert (state["status"], state["parts"]) == ("aborted", [])
    assert (await client.delete(f"{URL}/{upload_id}", headers=user.headers)).status_code == 204
    late = await client.post(f"{URL}/{upload_id}/complete", headers=user.headers)
    assert late.status_code == 409

    expiring = (await create(client, user, 1000)).json()["upload_id"]
    async with app.state.sessionmaker() as db, db.begin():
        await db.execute(
            update(Upload)
            .where(Upload.id == uuid.UUID(expiring))
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    state = (await client.get(f"{URL}/{expiring}", headers=user.headers)).json()
    assert state["status"] == "expired"
    gone = await client.post(f"{URL}/{expiring}/complete", headers=user.headers)
    assert gone.status_code == 410

    checks: list[tuple[dict[str, Any], int]] = [
        ({"content_type": "text/plain"}, 415),
        ({"file_size": 0}, 422),
        ({"file_size": 33 * MIB}, 413),
        ({"sha256": "xyz"}, 422),
        ({"filename": ""}, 422),
    ]
    for override, status in checks:
        spec = {"filename": "a.mp4", "content_type": "video/mp4", "file_size": 10, **override}
        resp = await client.post(URL, json=spec, headers=user.headers)
        assert resp.status_code == status, (override, resp.text)

    data = mp4_bytes(50_000)
    body, headers = form(data)
    streamed = await client.post(
        "/api/v1/upload/video", content=chunked(body), headers={**user.headers, **headers}
    )
    assert streamed.status_code == 201
    dup = await create(client, user, len(data), sha256=hashlib.sha256(data).hexdigest().upper())
    assert dup.status_code == 200, dup.text
    assert dup.json()["deduplicated"] is True
    assert dup.json()["video"]["id"] == streamed.json()["video"]["id"]
    dup_id = dup.json()["upload_id"]
    repeat = await client.post(f"{URL}/{dup_id}/complete", headers=user.headers)
    assert repeat.status_code == 200  # deduplicated results are 200 everywhere
    assert repeat.json()["deduplicated"] is True
    assert repeat.json()["video"]["id"] == streamed.json()["video"]["id"]
    other = await new_user(app)
    theirs = await create(client, other, len(data), sha256=hashlib.sha256(data).hexdigest())
    assert theirs.status_code == 201  # another user's bytes are never matched
