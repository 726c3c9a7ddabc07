"""Uploads in progress per user: slots for streamed uploads, a cap on direct sessions.

On SQLite the app counts slots in process memory; on PostgreSQL it uses Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.uploads.conftest import (
    TEST_POLICY,
    Caller,
    assert_nothing_left,
    chunked,
    form,
    mp4_bytes,
    new_user,
    pending_multipart,
    put,
    row_counts,
)
from vidlib.app import create_app
from vidlib.config import Settings
from vidlib.db.base import utcnow
from vidlib.errors import TooManyRequests
from vidlib.storage.base import MIB, ObjectStore
from vidlib.uploads.concurrency import (
    MemoryUploadSlots,
    RedisUploadSlots,
    UploadSlots,
    create_upload_slots,
)
from vidlib.uploads.dependencies import get_upload_policy
from vidlib.uploads.models import Upload, UploadStatus

VIDEO_URL = "/api/v1/upload/video"
TRANSCRIPT_URL = "/api/v1/upload/transcript"
DIRECT_URL = "/api/v1/upload/video/direct"
LIMIT = 2
BUSY = f"You already have {LIMIT} uploads in progress; wait for one to finish."
WAIT = 30  # seconds before a test gives up on something that should happen at once


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """At most ``LIMIT`` uploads in progress per user."""
    return settings.model_copy(update={"upload_concurrency_per_user": LIMIT})


@pytest.fixture
def slots(app: FastAPI, db_backend: str) -> UploadSlots:
    """The app's slots: Redis on the PostgreSQL configuration, in-process on SQLite."""
    s: UploadSlots = app.state.upload_slots
    assert isinstance(s, RedisUploadSlots if db_backend == "postgres" else MemoryUploadSlots)
    assert s.limit == LIMIT
    return s


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def upload(
    client: httpx.AsyncClient,
    caller: Caller,
    data: bytes,
    filename: str = "clip.mp4",
    url: str = VIDEO_URL,
) -> httpx.Response:
    body, headers = form(data, filename)
    return await client.post(url, content=chunked(body), headers={**caller.headers, **headers})


async def transcript(client: httpx.AsyncClient, caller: Caller) -> httpx.Response:
    return await upload(client, caller, b"Some words.\n", "notes.txt", TRANSCRIPT_URL)


class Held:
    """An upload that sends its form head, then stops until ``finish``.

    ``reading`` is set once the server asks for the body, that is once the upload holds
    its slot. No file byte has been sent by then, so nothing is in storage yet.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        caller: Caller,
        *,
        url: str = VIDEO_URL,
        data: bytes | None = None,
        filename: str = "clip.mp4",
    ) -> None:
        data = mp4_bytes(200_000) if data is None else data
        body, headers = form(data, filename)
        head, rest = body[: body.index(data)], body[body.index(data) :]
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

        async def stream() -> AsyncIterator[bytes]:
            self.reading.set()
            yield head
            await self.release.wait()
            async for chunk in chunked(rest):
                yield chunk

        self.task = asyncio.ensure_future(
            client.post(url, content=stream(), headers={**caller.headers, **headers})
        )

    async def started(self) -> None:
        reading = asyncio.ensure_future(self.reading.wait())
        await asyncio.wait({reading, self.task}, timeout=WAIT, return_when="FIRST_COMPLETED")
        reading.cancel()
        if self.task.done():
            pytest.fail(f"the upload ended early: {self.task.result().text}")
        assert self.reading.is_set(), "the server never read the body"

    async def finish(self) -> httpx.Response:
        self.release.set()
        return await asyncio.wait_for(self.task, WAIT)


@pytest.fixture
async def hold(database_url: str) -> AsyncIterator[Callable[..., Held]]:
    """Start held uploads; those still open when the test ends are let go first.

    A request left open would keep its transaction, and the tables could not be emptied.
    """
    made: list[Held] = []

    def start(client: httpx.AsyncClient, caller: Caller, **kwargs: Any) -> Held:
        held = Held(client, caller, **kwargs)
        made.append(held)
        return held

    yield start
    for held in made:
        held.release.set()
    running = {held.task for held in made if not held.task.done()}
    if running:
        _, stuck = await asyncio.wait(running, timeout=WAIT)
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck)
    for held in made:
        if not held.task.cancelled():
            held.task.exception()  # retrieved: the test has already said what went wrong


async def test_uploads_past_the_limit_are_refused_before_reading(
    client: httpx.AsyncClient,
    app: FastAPI,
    store: ObjectStore,
    slots: UploadSlots,
    hold: Callable[..., Held],
) -> None:
    ann, bob = await new_user(app), await new_user(app)
    held = [hold(client, ann) for _ in range(LIMIT)]
    for h in held:
        await h.started()
    assert await slots.in_use(ann.id) == LIMIT

    reads: list[int] = []
    body, headers = form(mp4_bytes(200_000))

    async def watched() -> AsyncIterator[bytes]:
        reads.append(len(body))
        yield body

    refused = await client.post(VIDEO_URL, content=watched(), headers={**ann.headers, **headers})
    assert refused.status_code == 429, refused.text
    assert refused.json() == {"detail": BUSY}
    assert int(refused.headers["retry-after"]) >= 1
    assert reads == [], "the body was read before the request was refused"
    # Transcripts count against the same budget.
    refused = await transcript(client, ann)
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"]
    # Nothing was kept: no row, no object, no multipart upload.
    await assert_nothing_left(app, store)
    assert (await row_counts(app))["transcripts"] == 0
    assert await slots.in_use(ann.id) == LIMIT

    # Another user is not affected.
    assert (await upload(client, bob, mp4_bytes(100_000))).status_code == 201
    assert (await transcript(client, bob)).status_code == 201

    # One upload ends: one more may start, and then the user is at the limit again.
    first = await held[0].finish()
    assert first.status_code == 201, first.text
    assert await slots.in_use(ann.id) == LIMIT - 1
    later = hold(client, ann)
    await later.started()
    assert (await upload(client, ann, mp4_bytes(100_000))).status_code == 429
    for h in [*held[1:], later]:
        resp = await h.finish()
        assert resp.status_code == 201, resp.text
    assert await slots.in_use(ann.id) == 0
    assert (await row_counts(app))["videos"] == LIMIT + 2
    assert (await upload(client, ann, mp4_bytes(100_000))).status_code == 201


@pytest.mark.parametrize("storage_backend", ["local"])
async def test_video_and_transcript_uploads_share_the_slots(
    client: httpx.AsyncClient, app: FastAPI, slots: UploadSlots, hold: Callable[..., Held]
) -> None:
    ann = await new_user(app)
    held_transcript = hold(client, ann, url=TRANSCRIPT_URL, data=b"Words.\n", filename="a.txt")
    held_video = hold(client, ann)
    await held_transcript.started()
    await held_video.started()
    assert (await upload(client, ann, mp4_bytes(100_000))).status_code == 429
    assert (await transcript(client, ann)).status_code == 429
    done = await held_transcript.finish()
    assert done.status_code == 201, done.text
    assert (await transcript(client, ann)).status_code == 201
    assert (await held_video.finish()).status_code == 201
    assert await slots.in_use(ann.id) == 0


@pytest.mark.parametrize("storage_backend", ["local"])
async def test_failed_uploads_give_their_slot_back(
    client: httpx.AsyncClient, app: FastAPI, slots: UploadSlots, hold: Callable[..., Held]
) -> None:
    ann = await new_user(app)
    held = hold(client, ann)  # one slot stays taken: a leak would leave none
    await held.started()
    failures = [
        (await upload(client, ann, b"plain text, not a video" * 500)).status_code,
        (await upload(client, ann, b"")).status_code,
        (await upload(client, ann, b"\xff\xfe not text", "a.srt", TRANSCRIPT_URL)).status_code,
    ]
    body, headers = form(mp4_bytes(1000))
    too_big = await client.post(
        VIDEO_URL,
        content=body,
        headers={**ann.headers, **headers, "Content-Length": str(64 * MIB)},
    )
    failures.append(too_big.status_code)
    assert failures == [415, 422, 422, 413]
    assert await slots.in_use(ann.id) == 1
    assert (await upload(client, ann, mp4_bytes(100_000))).status_code == 201
    assert (await held.finish()).status_code == 201
    assert await slots.in_use(ann.id) == 0


async def _disconnecting_upload(
    app: FastAPI, caller: Caller, data: bytes, reading: asyncio.Event, gone: asyncio.Event
) -> int:
    """POST through raw ASGI: half the body, then the client goes away (``http.disconnect``)."""
    body, headers = form(data)
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": body[: len(body) // 2], "more_body": True}
        reading.set()
        await gone.wait()
        return {"type": "http.disconnect"}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    all_headers = {**caller.headers, **headers, "Host": "testserver"}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": VIDEO_URL,
        "raw_path": VIDEO_URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return statuses[0]


async def test_a_client_that_goes_away_gives_its_slot_back(
    client: httpx.AsyncClient,
    app: FastAPI,
    store: ObjectStore,
    slots: UploadSlots,
    hold: Callable[..., Held],
) -> None:
    ann = await new_user(app)
    reading, gone = asyncio.Event(), asyncio.Event()
    # 1.5 MiB of the file reach the server (storage is being written) before it disconnects.
    request = asyncio.ensure_future(
        _disconnecting_upload(app, ann, mp4_bytes(3 * MIB), reading, gone)
    )
    try:
        await asyncio.wait_for(reading.wait(), WAIT)
        assert await slots.in_use(ann.id) == 1
    finally:
        gone.set()
    assert await asyncio.wait_for(request, WAIT) == 400
    assert await slots.in_use(ann.id) == 0
    await assert_nothing_left(app, store)

    # The request is cancelled (the server stops the handler, e.g. on a timeout).
    held = [hold(client, ann) for _ in range(LIMIT)]
    for h in held:
        await h.started()
    for h in held:
        h.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await h.task
    assert await slots.in_use(ann.id) == 0
    await assert_nothing_left(app, store)
    assert (await upload(client, ann, mp4_bytes(100_000))).status_code == 201


@pytest.mark.parametrize("storage_backend", ["local"])
@pytest.mark.parametrize("db_backend", ["postgres"])
async def test_instances_sharing_redis_share_the_limit(
    settings: Settings, hold: Callable[..., Held]
) -> None:
    assert settings.redis_url
    one, two = create_app(settings), create_app(settings)
    async with (
        LifespanManager(one),
        LifespanManager(two),
        _client(one) as c1,
        _client(two) as c2,
    ):
        ann = await new_user(one)
        held = [hold(c1, ann), hold(c2, ann)]
        for h in held:
            await h.started()
        for c in (c1, c2):
            refused = await upload(c, ann, mp4_bytes(100_000))
            assert refused.status_code == 429, refused.text
            assert refused.json() == {"detail": BUSY}
        assert (await held[0].finish()).status_code == 201
        # The slot freed on the first instance is free on the second.
        assert (await upload(c2, ann, mp4_bytes(100_000))).status_code == 201
        assert (await held[1].finish()).status_code == 201


@pytest.mark.parametrize("storage_backend", ["local"])
@pytest.mark.parametrize("db_backend", ["postgres"])
async def test_slots_of_a_dead_process_are_reclaimed(
    client: httpx.AsyncClient,
    app: FastAPI,
    slots: UploadSlots,
    redis_url: str,
    hold: Callable[..., Held],
) -> None:
    assert isinstance(slots, RedisUploadSlots)
    ann = await new_user(app)
    key = slots.key(ann.id)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        seconds, micros = await redis.time()
        now_ms = seconds * 1000 + micros // 1000
        # Leases a killed process never released: one lapsed, one lapsing in 0.5 s.
        await redis.zadd(key, {"lapsed": now_ms - 1, "dying": now_ms + 500})
        await redis.pexpire(key, 500)
        held = hold(client, ann)
        await held.started()  # the lapsed lease made room
        assert await redis.zscore(key, "lapsed") is None
        assert 0 < await redis.pttl(key) <= 120_000  # the set expires with its last lease
        assert (await upload(client, ann, mp4_bytes(100_000))).status_code == 429
        await asyncio.sleep(0.6)
        assert (await upload(client, ann, mp4_bytes(100_000))).status_code == 201
        assert (await held.finish()).status_code == 201
        assert await redis.exists(key) == 0
    finally:
        await redis.aclose()


# -- UploadSlots on their own --------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def make_slots(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., UploadSlots]]:
    """Build slots of either kind (closed after the test)."""
    url: str | None = request.getfixturevalue("redis_url") if request.param == "redis" else None
    made: list[UploadSlots] = []

    def make(limit: int) -> UploadSlots:
        slots: UploadSlots = RedisUploadSlots(url, limit) if url else MemoryUploadSlots(limit)
        made.append(slots)
        return slots

    yield make
    for slots in made:
        await slots.close()


async def test_slots_limit_each_user(make_slots: Callable[..., UploadSlots]) -> None:
    slots = make_slots(2)
    ann, bob = uuid.uuid4(), uuid.uuid4()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(slots.hold(ann))
        await stack.enter_async_context(slots.hold(ann))
        with pytest.raises(TooManyRequests) as refused:
            await stack.enter_async_context(slots.hold(ann))
        assert refused.value.status_code == 429
        assert refused.value.message == (
            "You already have 2 uploads in progress; wait for one to finish."
        )
        assert refused.value.headers == {"Retry-After": "5"}
        await stack.enter_async_context(slots.hold(bob))
        assert (await slots.in_use(ann), await slots.in_use(bob)) == (2, 1)
    assert (await slots.in_use(ann), await slots.in_use(bob)) == (0, 0)
    async with slots.hold(ann):
        assert await slots.in_use(ann) == 1

    one = make_slots(1)
    async with one.hold(ann):
        with pytest.raises(TooManyRequests, match="1 upload in progress; wait for it"):
            async with one.hold(ann):
                pass


async def test_slots_are_released_on_error_and_cancellation(
    make_slots: Callable[..., UploadSlots],
) -> None:
    slots = make_slots(1)
    ann = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with slots.hold(ann):
            raise RuntimeError("the upload failed")
    assert await slots.in_use(ann) == 0

    holding = asyncio.Event()

    async def forever() -> None:
        async with slots.hold(ann):
            holding.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(forever())
    await asyncio.wait_for(holding.wait(), WAIT)
    assert await slots.in_use(ann) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await slots.in_use(ann) == 0
    async with slots.hold(ann):
        pass


async def test_a_running_upload_keeps_renewing_its_lease(redis_url: str) -> None:
    slots = RedisUploadSlots(redis_url, 1, lease_seconds=0.3, renew_every_seconds=0.05)
    other_process = RedisUploadSlots(redis_url, 1)
    ann = uuid.uuid4()
    try:
        async with slots.hold(ann):
            await asyncio.sleep(1.0)  # more than three leases
            assert await other_process.in_use(ann) == 1
            with pytest.raises(TooManyRequests):
                async with other_process.hold(ann):
                    pass
        assert await other_process.in_use(ann) == 0
    finally:
        await slots.close()
        await other_process.close()


async def test_a_lease_that_is_not_renewed_lapses(redis_url: str) -> None:
    # A holder that stops renewing (its process froze or died) loses the slot.
    stalled = RedisUploadSlots(redis_url, 1, lease_seconds=0.3, renew_every_seconds=60)
    other_process = RedisUploadSlots(redis_url, 1)
    ann = uuid.uuid4()
    try:
        async with contextlib.AsyncExitStack() as others:
            async with stalled.hold(ann):
                with pytest.raises(TooManyRequests):
                    async with other_process.hold(ann):
                        pass
                await asyncio.sleep(0.5)
                await others.enter_async_context(other_process.hold(ann))
            # The stalled holder's release removed its own lease, not the new one.
            assert await other_process.in_use(ann) == 1
        assert await other_process.in_use(ann) == 0
    finally:
        await stalled.close()
        await other_process.close()


async def test_redis_down_lets_uploads_through(caplog: pytest.LogCaptureFixture) -> None:
    slots = RedisUploadSlots("redis://127.0.0.1:1/0", 1)
    ann = uuid.uuid4()
    try:
        with caplog.at_level(logging.WARNING, logger="vidlib.uploads"):
            async with slots.hold(ann), slots.hold(ann):
                pass
        assert "upload slots unavailable" in caplog.text
    finally:
        await slots.close()


def test_redis_is_used_when_configured() -> None:
    assert isinstance(create_upload_slots(3, None), MemoryUploadSlots)
    assert isinstance(create_upload_slots(3, "redis://127.0.0.1:6379/0"), RedisUploadSlots)


# -- direct upload sessions ----------------------------------------------------------


async def create_direct(
    client: httpx.AsyncClient, caller: Caller, size: int, **extra: Any
) -> httpx.Response:
    body = {"filename": "phone.mp4", "content_type": "video/mp4", "file_size": size, **extra}
    return await client.post(DIRECT_URL, json=body, headers=caller.headers)


async def open_sessions(app: FastAPI, user_id: uuid.UUID) -> int:
    async with app.state.sessionmaker() as session:
        stmt = select(func.count()).where(
            Upload.user_id == user_id, Upload.status == UploadStatus.pending.value
        )
        return int((await session.execute(stmt)).scalar_one())


async def test_direct_sessions_are_capped(
    client: httpx.AsyncClient, app: FastAPI, store: ObjectStore
) -> None:
    app.dependency_overrides[get_upload_policy] = lambda: replace(
        TEST_POLICY, direct_sessions_per_user=2
    )
    ann, bob = await new_user(app), await new_user(app)
    small = mp4_bytes(1000)
    single = await create_direct(client, ann, len(small))
    multi = await create_direct(client, ann, 7 * MIB)
    assert (single.status_code, multi.status_code) == (201, 201), multi.text
    assert multi.json()["method"] == "multipart"

    rows, in_storage = await row_counts(app), await pending_multipart(store)
    for size in (7 * MIB, 1000):
        refused = await create_direct(client, ann, size)
        assert refused.status_code == 429, refused.text
        assert refused.json() == {
            "detail": "You already have 2 direct uploads in progress; complete or cancel one first."
        }
        assert int(refused.headers["retry-after"]) >= 1
    # Nothing was created for the refused requests.
    assert await row_counts(app) == rows
    assert await pending_multipart(store) == in_storage
    # Another user is not affected.
    assert (await create_direct(client, bob, 7 * MIB)).status_code == 201

    # Cancelling a session makes room for one.
    aborted = await client.delete(f"{DIRECT_URL}/{multi.json()['upload_id']}", headers=ann.headers)
    assert aborted.status_code == 204
    assert (await create_direct(client, ann, 1000)).status_code == 201
    assert (await create_direct(client, ann, 1000)).status_code == 429

    # So does completing one.
    session = single.json()
    assert (await put(client, session["url"], small, session["headers"])).status_code == 200
    done = await client.post(f"{DIRECT_URL}/{session['upload_id']}/complete", headers=ann.headers)
    assert done.status_code == 201, done.text
    latest = await create_direct(client, ann, 1000)
    assert latest.status_code == 201
    assert (await create_direct(client, ann, 1000)).status_code == 429

    # An expired session no longer counts.
    async with app.state.sessionmaker() as db, db.begin():
        await db.execute(
            update(Upload)
            .where(Upload.id == uuid.UUID(latest.json()["upload_id"]))
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    assert (await create_direct(client, ann, 1000)).status_code == 201
    assert (await create_direct(client, ann, 1000)).status_code == 429

    # A file the user already has opens no session: answered even at the cap.
    data = mp4_bytes(50_000)
    assert (await upload(client, ann, data)).status_code == 201
    dup = await create_direct(client, ann, len(data), sha256=hashlib.sha256(data).hexdigest())
    assert dup.status_code == 200, dup.text
    assert dup.json()["deduplicated"] is True
    assert await open_sessions(app, ann.id) == 2 + 1  # two open, one expired still pending


@pytest.mark.parametrize("storage_backend", ["local"])
async def test_concurrent_direct_sessions_never_pass_the_cap(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    app.dependency_overrides[get_upload_policy] = lambda: replace(
        TEST_POLICY, direct_sessions_per_user=3
    )
    ann = await new_user(app)
    responses = await asyncio.gather(*(create_direct(client, ann, 1000) for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [429] * 5, [r.text for r in responses]
    assert await open_sessions(app, ann.id) == 3
