"""Upload tests: every backend pair, small part sizes, and helpers to prove nothing is left."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from vidlib.auth.models import User
from vidlib.storage.base import MIB, MIN_PART_SIZE, ObjectStore
from vidlib.uploads.dependencies import get_upload_policy
from vidlib.uploads.models import Transcript, Upload
from vidlib.uploads.service import UploadPolicy
from vidlib.videos.models import Video

# Small enough to keep the suite fast, large enough to exercise every branch:
# streamed uploads above 5 MiB use several parts; direct ones above 6 MiB use multipart.
TEST_POLICY = UploadPolicy(
    max_bytes=32 * MIB,
    stream_part_size=MIN_PART_SIZE,
    single_put_limit=6 * MIB,
    direct_part_size=MIN_PART_SIZE,
    first_part_urls=2,
)

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def mp4_bytes(size: int) -> bytes:
    """Random bytes behind a valid-looking MP4 ``ftyp`` box (enough for sniffing)."""
    return MP4_HEAD + os.urandom(max(0, size - len(MP4_HEAD)))


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    """The application with the test policy."""
    app.dependency_overrides[get_upload_policy] = lambda: TEST_POLICY
    return app


@pytest.fixture
def store(app: FastAPI) -> ObjectStore:
    """The app's object store."""
    s: ObjectStore = app.state.store
    return s


@dataclass
class Caller:
    """A registered user: auth headers and id."""

    headers: dict[str, str]
    id: uuid.UUID


async def new_user(app: FastAPI) -> Caller:
    """A user row and a real access token for it.

    Registration is covered by the auth tests; here it would only add two password
    hashes (the slowest step of the whole suite) to every test.
    """
    user = User(email=f"u-{uuid.uuid4().hex[:12]}@example.com", password_hash="!")
    async with app.state.sessionmaker() as session, session.begin():
        session.add(user)
    token = app.state.jwt_service.issue(user.id).token
    return Caller({"Authorization": f"Bearer {token}"}, user.id)


@pytest.fixture
async def user(app: FastAPI) -> Caller:
    """A user of the app."""
    return await new_user(app)


async def row_counts(app: FastAPI) -> dict[str, int]:
    """Rows in the upload-related tables."""
    async with app.state.sessionmaker() as session:
        return {
            model.__tablename__: int(
                (await session.execute(select(func.count()).select_from(model))).scalar_one()
            )
            for model in (Video, Upload, Transcript)
        }


async def stored_keys(store: ObjectStore, prefix: str = "uploads/") -> list[str]:
    """Every object key under ``prefix``."""
    return [info.key async for info in store.list(prefix)]


async def pending_multipart(store: ObjectStore, prefix: str = "uploads/") -> list[str]:
    """Incomplete multipart uploads under ``prefix``."""
    return [m.key async for m in store.list_multipart_uploads(prefix)]


async def assert_nothing_left(app: FastAPI, store: ObjectStore) -> None:
    """No video or upload row, no object, no incomplete multipart upload."""
    counts = await row_counts(app)
    assert counts["videos"] == 0, counts
    assert counts["uploads"] == 0, counts
    assert await stored_keys(store) == []
    assert await pending_multipart(store) == []


def is_local(url: str) -> bool:
    """URLs of the local store point at the app itself."""
    return url.startswith("http://testserver/")


async def fetch(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """GET a URL the API handed out: through the app for the local store, else real HTTP."""
    if is_local(url):
        return await client.get(url, headers=headers)
    async with httpx.AsyncClient() as real:
        return await real.get(url, headers=headers)


async def put(
    client: httpx.AsyncClient, url: str, data: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """PUT bytes to a presigned URL, the way a client app would."""
    if is_local(url):
        return await client.put(url, content=data, headers=headers)
    async with httpx.AsyncClient() as real:
        return await real.put(url, content=data, headers=headers)


async def chunked(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A body sent in chunks, as a real client streams it."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def form(
    data: bytes, filename: str = "clip.mp4", field: str = "file", boundary: str = "vidlib-b0undary"
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one file part, and its Content-Type header."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
