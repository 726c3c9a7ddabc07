"""The database is the source of truth: lost messages, dead workers and transient
failures all end with the work done (or given up after the attempts run out)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import seed_videos
from tests.tasks.conftest import MediaFiles
from tests.tasks.support import Caller, wait_for_job, wait_for_video
from vidlib.db.base import utcnow
from vidlib.media import MediaError
from vidlib.storage.base import ObjectNotFound, ObjectStore, StorageError
from vidlib.tasks.models import VideoIngest
from vidlib.tasks.retry import TaskError, backoff, classify
from vidlib.videos.models import Video, VideoStatus
from vidlib.videos.repository import VideoRepository


@pytest.fixture(params=["local"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Recovery does not depend on the store."""
    return str(request.param)


async def stored_video(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    user_id: uuid.UUID,
    path: Path,
    *,
    age: timedelta = timedelta(minutes=1),
    ingest: VideoIngest | None = None,
) -> uuid.UUID:
    """A processing video put straight into storage and the database, never queued
    (as when the broker was down at upload time, or the import command ran)."""
    created = utcnow() - age
    key = f"uploads/users/{user_id}/videos/{int(created.timestamp())}_{path.name}"
    data = await anyio.Path(path).read_bytes()
    info = await store.put_bytes(key, data, content_type="video/mp4")
    video = Video(
        user_id=user_id,
        filename=path.name,
        original_filename=path.name,
        s3_key=key,
        s3_url=store.object_url(key),
        s3_bucket=store.bucket,
        content_type="video/mp4",
        file_size=info.size,
        status=VideoStatus.processing.value,
        created_at=created,
        updated_at=created,
    )
    async with sessionmaker() as session, session.begin():
        await VideoRepository(session).add(video)
        if ingest is not None:
            ingest.video_id = video.id
            session.add(ingest)
    return video.id


async def attempts_of(app: FastAPI, video_id: uuid.UUID) -> int:
    async with app.state.sessionmaker() as session:
        row = await session.get(VideoIngest, video_id)
    assert row is not None
    attempts: int = row.attempts
    return attempts


async def test_a_video_never_queued_is_swept_up(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    video_id = await stored_video(app.state.sessionmaker, app.state.store, caller.id, media.mp4)
    video = await wait_for_video(client, caller, video_id)
    assert video["status"] == "ready"
    assert await attempts_of(app, video_id) == 1


async def test_a_dead_workers_claim_lapses_and_is_taken_over(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    lapsed = VideoIngest(
        attempts=1,
        lease_expires_at=utcnow() - timedelta(seconds=1),
        enqueued_at=utcnow() - timedelta(minutes=1),
        updated_at=utcnow() - timedelta(minutes=1),
    )
    video_id = await stored_video(
        app.state.sessionmaker, app.state.store, caller.id, media.webm, ingest=lapsed
    )
    video = await wait_for_video(client, caller, video_id)
    assert video["status"] == "ready"
    assert await attempts_of(app, video_id) == 2


async def test_a_live_claim_is_not_taken_over(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    held = VideoIngest(
        attempts=1,
        lease_expires_at=utcnow() + timedelta(seconds=1),
        updated_at=utcnow(),
    )
    video_id = await stored_video(
        app.state.sessionmaker, app.state.store, caller.id, media.mp4, ingest=held
    )
    await app.state.ingest.enqueue(video_id)  # a duplicate delivery while it is held
    video = await wait_for_video(client, caller, video_id)
    # Done only once the claim lapsed, by the second attempt.
    assert video["status"] == "ready"
    assert await attempts_of(app, video_id) == 2


async def test_claims_used_up_by_crashes_fail_the_video(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    exhausted = VideoIngest(
        attempts=3,  # fast_config's max_attempts
        lease_expires_at=utcnow() - timedelta(seconds=1),
        updated_at=utcnow() - timedelta(minutes=1),
    )
    video_id = await stored_video(
        app.state.sessionmaker, app.state.store, caller.id, media.mp4, ingest=exhausted
    )
    video = await wait_for_video(client, caller, video_id)
    assert video["status"] == "failed"
    assert video["metadata"]["error"] == "Processing was interrupted too many times."


async def test_a_deleted_video_is_not_processed(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    video_id = await stored_video(app.state.sessionmaker, app.state.store, caller.id, media.mp4)
    resp = await client.delete(f"/api/v1/videos/s3-videos/{video_id}", headers=caller.headers)
    assert resp.status_code == 204
    await app.state.ingest.enqueue(video_id)
    await asyncio.sleep(0.5)
    async with app.state.sessionmaker() as session:
        video = await session.get(Video, video_id)
        assert video is not None
        assert video.status == VideoStatus.processing.value
        assert await session.get(VideoIngest, video_id) is None


async def test_transient_job_failures_are_retried_with_backoff(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller
) -> None:
    (video,) = await seed_videos(app.state.sessionmaker, caller.id, 1)
    ok = await client.post(
        "/api/v1/jobs/create",
        json={"s3_video_id": str(video.id), "kind": "flaky", "options": {"succeed_on": 3}},
        headers=caller.headers,
    )
    given_up = await client.post(
        "/api/v1/jobs/create",
        json={"s3_video_id": str(video.id), "kind": "flaky", "options": {"succeed_on": 9}},
        headers=caller.headers,
    )
    permanent = await client.post(
        "/api/v1/jobs/create",
        json={"s3_video_id": str(video.id), "kind": "flaky", "options": {"permanent": True}},
        headers=caller.headers,
    )
    done = await wait_for_job(client, caller, ok.json()["id"])
    assert (done["status"], done["attempts"], done["result"]) == ("succeeded", 3, {"attempt": 3})
    failed = await wait_for_job(client, caller, given_up.json()["id"])
    assert (failed["status"], failed["attempts"]) == ("failed", 3)
    assert failed["error"] == "A service was briefly unavailable."
    refused = await wait_for_job(client, caller, permanent.json()["id"])
    assert (refused["status"], refused["attempts"]) == ("failed", 1)
    assert refused["error"] == "The input is unusable."


def test_failures_are_sorted_into_permanent_and_transient() -> None:
    assert classify(MediaError("bad", permanent=True)).permanent
    assert not classify(MediaError("slow", permanent=False)).permanent
    assert classify(ObjectNotFound("gone")).permanent
    assert not classify(StorageError("503")).permanent
    assert not classify(TimeoutError()).permanent
    assert not classify(TaskError("later", permanent=False)).permanent
    assert classify(RuntimeError("bug")).reason == "Processing failed unexpectedly."


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    base, cap = timedelta(seconds=10), timedelta(minutes=10)
    delays = [backoff(n, base=base, cap=cap).total_seconds() for n in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        full = min(600, 10 * 2 ** (attempt - 1))
        assert full / 2 <= delay <= full
    assert max(delays) <= 600
