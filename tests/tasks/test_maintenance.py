"""Periodic maintenance: purge past retention (jobs' files first), expire uploads."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.tasks.conftest import MediaFiles
from tests.tasks.support import Caller, upload_video, wait_for_job, wait_for_video
from vidlib.db.base import utcnow
from vidlib.jobs.models import Job
from vidlib.storage.base import ObjectStore
from vidlib.tasks.periodic import maintain
from vidlib.tasks.runtime import Background
from vidlib.uploads.models import Upload, UploadMethod, UploadStatus
from vidlib.uploads.repository import UploadRepository
from vidlib.videos.models import Video
from vidlib.videos.repository import VideoRepository


@pytest.fixture(params=["local", "s3"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Both stores: maintenance deletes objects."""
    return str(request.param)


async def captioned_video(
    client: httpx.AsyncClient, caller: Caller, path: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ready video with a succeeded captions job: (video, job)."""
    body = await upload_video(client, caller, path)
    video = await wait_for_video(client, caller, body["video"]["id"])
    resp = await client.post(
        "/api/v1/jobs/create",
        json={"s3_video_id": video["id"], "transcript_text": "Hello there. Bye now."},
        headers=caller.headers,
    )
    assert resp.status_code == 201, resp.text
    job = await wait_for_job(client, caller, resp.json()["id"])
    assert job["status"] == "succeeded", job
    return video, job


async def keys(store: ObjectStore) -> set[str]:
    return {info.key async for info in store.list("uploads/")}


async def test_purge_removes_jobs_and_their_files_before_the_video(
    app: FastAPI,
    client: httpx.AsyncClient,
    caller: Caller,
    media: MediaFiles,
    background: Background,
) -> None:
    old_video, old_job = await captioned_video(client, caller, media.mp4)
    recent_video, recent_job = await captioned_video(client, caller, media.webm)
    store: ObjectStore = app.state.store
    async with app.state.sessionmaker() as session, session.begin():
        repo = VideoRepository(session)
        for video_id, age in ((old_video["id"], 31), (recent_video["id"], 1)):
            video = await session.get(Video, uuid.UUID(str(video_id)))
            assert video is not None
            await repo.soft_delete(video, when=utcnow() - timedelta(days=age))
    before = await keys(store)
    old_files = {f["s3_key"] for f in old_job["result"]["files"].values()}
    assert old_files <= before

    assert background.context is not None
    await maintain(background.context)

    after = await keys(store)
    assert not old_files & after
    assert str(old_video["s3_key"]) not in after
    recent_files = {f["s3_key"] for f in recent_job["result"]["files"].values()}
    assert recent_files | {str(recent_video["s3_key"])} <= after
    async with app.state.sessionmaker() as session:
        assert await session.get(Video, uuid.UUID(str(old_video["id"]))) is None
        jobs = await session.scalar(select(func.count()).select_from(Job))
    assert jobs == 1
    gone = await client.get(f"/api/v1/jobs/{old_job['id']}", headers=caller.headers)
    assert gone.status_code == 404


async def test_expired_upload_sessions_are_cleaned_up(
    app: FastAPI, caller: Caller, background: Background
) -> None:
    store: ObjectStore = app.state.store
    key = f"uploads/users/{caller.id}/videos/1700000000_abandoned.mp4"
    await store.put_bytes(key, b"\x00" * 16, content_type="video/mp4")
    async with app.state.sessionmaker() as session, session.begin():
        upload = await UploadRepository(session).add(
            Upload(
                user_id=caller.id,
                method=UploadMethod.put.value,
                status=UploadStatus.pending.value,
                s3_key=key,
                filename="abandoned.mp4",
                original_filename="abandoned.mp4",
                content_type="video/mp4",
                file_size=16,
                expires_at=utcnow() - timedelta(hours=1),
            )
        )
    assert background.context is not None
    await maintain(background.context)
    async with app.state.sessionmaker() as session:
        row = await session.get(Upload, upload.id)
    assert row is not None
    assert row.status == UploadStatus.expired.value
    assert await store.head(key) is None
