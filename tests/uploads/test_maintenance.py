"""``reconcile`` and ``import-s3``: their service functions, and the commands' wiring."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
from fastapi import FastAPI
from sqlalchemy import select, update
from typer.testing import CliRunner

from tests.conftest import JWT_SECRET
from tests.factories import make_video
from tests.uploads.conftest import (
    Caller,
    chunked,
    form,
    mp4_bytes,
    pending_multipart,
    stored_keys,
)
from vidlib.auth.models import User
from vidlib.config import load_settings
from vidlib.db.base import utcnow
from vidlib.db.migrate import upgrade
from vidlib.db.session import create_engine, create_sessionmaker
from vidlib.jobs.models import Job
from vidlib.storage import open_store
from vidlib.storage.base import MIB, ObjectStore
from vidlib.tasks.config import BackgroundConfig
from vidlib.uploads.commands import uploads_cli
from vidlib.uploads.maintenance import ReconcileReport, UnknownUser, import_objects, reconcile
from vidlib.uploads.models import Upload
from vidlib.videos.models import Video
from vidlib.videos.repository import VideoRepository


async def reconcile_now(app: FastAPI, store: ObjectStore, *, fix: bool = False) -> ReconcileReport:
    """Reconcile with no grace period: everything counts at once."""
    return await reconcile(
        app.state.sessionmaker,
        store,
        fix=fix,
        orphan_grace=timedelta(0),
        multipart_grace=timedelta(0),
    )


class RecordingQueue:
    """Stands in for the processing queue (not part of this package): records what is queued."""

    def __init__(self) -> None:
        self.queued: list[uuid.UUID] = []

    async def enqueue(self, video_id: uuid.UUID) -> None:
        self.queued.append(video_id)


async def test_reconcile(
    client: httpx.AsyncClient, app: FastAPI, store: ObjectStore, user: Caller
) -> None:
    maker = app.state.sessionmaker
    body, headers = form(mp4_bytes(10_000))
    kept = await client.post(
        "/api/v1/upload/video", content=chunked(body), headers={**user.headers, **headers}
    )
    kept_key = kept.json()["video"]["s3_key"]
    orphan = f"uploads/users/{user.id}/videos/1700000000_orphan.mp4"
    await store.put_bytes(orphan, b"x", content_type="video/mp4")
    stale_key = f"uploads/users/{user.id}/videos/1700000001_stale.mp4"
    stale_id = await store.create_multipart(stale_key, content_type="video/mp4")
    lost = make_video(user.id, 1)
    async with maker() as session, session.begin():
        await VideoRepository(session).add(lost)

    direct = "/api/v1/upload/video/direct"
    spec = {"filename": "a.mp4", "content_type": "video/mp4", "file_size": 7 * MIB}
    # Each multipart session owns a multipart upload in storage from the start.
    live_session = (await client.post(direct, json=spec, headers=user.headers)).json()
    old_session = (await client.post(direct, json=spec, headers=user.headers)).json()
    async with maker() as session, session.begin():
        await session.execute(
            update(Upload)
            .where(Upload.id == uuid.UUID(old_session["upload_id"]))
            .values(expires_at=utcnow() - timedelta(hours=1))
        )

    # A job's caption file is owned by the job's row; one of a job that is gone is not.
    job = Job(user_id=user.id, video_id=uuid.UUID(kept.json()["video"]["id"]), kind="captions")
    async with maker() as session, session.begin():
        session.add(job)
    caption = f"uploads/users/{user.id}/captions/{job.id}.vtt"
    ghost = f"uploads/users/{user.id}/captions/{uuid.uuid4()}.vtt"
    for key in (caption, ghost):
        await store.put_bytes(key, b"WEBVTT\n", content_type="text/vtt")

    report = await reconcile_now(app, store)
    assert sorted(report.orphan_objects) == sorted([orphan, ghost])
    assert report.missing_objects == [(lost.id, lost.s3_key)]
    assert [key for key, _ in report.stale_multipart] == [stale_key]
    assert report.expired_sessions == [uuid.UUID(old_session["upload_id"])]
    assert len(await pending_multipart(store)) == 3  # nothing changed without --fix
    assert sorted(await stored_keys(store)) == sorted([kept_key, orphan, caption, ghost])

    fixed = await reconcile_now(app, store, fix=True)
    assert sorted(fixed.orphan_objects) == sorted([orphan, ghost])
    assert sorted(await stored_keys(store)) == sorted([kept_key, caption])
    uploads = [m.upload_id async for m in store.list_multipart_uploads("uploads/")]
    assert len(uploads) == 1
    assert stale_id not in uploads
    async with maker() as session:
        statuses = dict(
            (
                await session.execute(
                    select(Upload.id, Upload.status).where(Upload.method != "stream")
                )
            ).all()
        )
        assert (await session.get(Video, lost.id)) is not None  # missing objects: report only
    assert statuses == {
        uuid.UUID(live_session["upload_id"]): "pending",
        uuid.UUID(old_session["upload_id"]): "expired",
    }

    again = await reconcile_now(app, store, fix=True)
    assert (again.orphan_objects, again.stale_multipart, again.expired_sessions) == ([], [], [])
    assert again.missing_objects == [(lost.id, lost.s3_key)]
    # The default grace keeps fresh objects and uploads out of reach.
    await store.put_bytes(orphan, b"x", content_type="video/mp4")
    assert (await reconcile(maker, store, fix=True)).orphan_objects == []


async def test_import(client: httpx.AsyncClient, app: FastAPI, store: ObjectStore) -> None:
    maker = app.state.sessionmaker
    owner = User(email="owner@example.com", password_hash="!")
    async with maker() as session, session.begin():
        session.add(owner)
    data = mp4_bytes(20_000)
    video_key = f"uploads/users/{owner.id}/videos/1700000000_beach_day.mp4"
    await store.put_bytes(video_key, data, content_type="application/octet-stream")
    await store.put_bytes(
        f"uploads/users/{owner.id}/thumbnails/1700000000_beach_day_thumb.jpg",
        b"\xff\xd8\xff\xe0" + b"\x00" * 100,
        content_type="image/jpeg",
    )
    stranger = f"uploads/users/{uuid.uuid4()}/videos/1700000000_x.mp4"
    await store.put_bytes(stranger, mp4_bytes(100), content_type="video/mp4")
    await store.put_bytes("legacy/Old Clip.mov", mp4_bytes(300), content_type="video/quicktime")

    queue = RecordingQueue()
    seen: list[str] = []
    report = await import_objects(maker, store, ingest=queue, progress=seen.append)
    assert len(report.created) == 1
    assert queue.queued == report.created
    assert sorted(reason for _, reason in report.skipped) == [
        "a thumbnail, not a video",
        "no user with id " + stranger.split("/")[2],
    ]
    assert len(seen) == 3
    async with maker() as session:
        video = await session.get(Video, report.created[0])
        refreshed = await session.get(User, owner.id)
    assert video is not None
    assert refreshed is not None
    assert (video.s3_key, video.filename, video.status) == (
        video_key,
        "beach_day.mp4",
        "processing",
    )
    assert (video.content_type, video.file_size, video.user_id) == (
        "video/mp4",
        len(data),
        owner.id,
    )
    assert refreshed.video_count == 1

    again = await import_objects(maker, store, ingest=queue)
    assert (again.created, again.already_registered) == ([], 1)

    no_owner = await import_objects(maker, store, prefix="legacy/")
    assert no_owner.skipped == [("legacy/Old Clip.mov", "no owner in the key; pass --user")]
    given = await import_objects(maker, store, prefix="legacy/", user_email="OWNER@example.com")
    assert len(given.created) == 1
    with pytest.raises(UnknownUser):
        await import_objects(maker, store, prefix="legacy/", user_email="nobody@example.com")

    token = app.state.jwt_service.issue(owner.id).token
    listed = await client.get(
        "/api/v1/videos/s3-videos?sort_by=filename&sort_order=asc",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert [v["filename"] for v in listed.json()["videos"]] == [
        "beach_day.mp4",
        "old_clip.mp4",
    ]  # content decides
    assert listed.json()["videos"][1]["original_filename"] == "Old Clip.mov"


def test_commands(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "VIDLIB_DATA_DIR": str(tmp_path),
        "VIDLIB_DATABASE_URL": sqlite_url,
        "VIDLIB_STORAGE_BACKEND": "local",
        "VIDLIB_JWT_SECRET": JWT_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    reconciled = runner.invoke(uploads_cli, ["reconcile", "--fix"])
    assert reconciled.exit_code == 0, reconciled.output
    assert "0 orphan objects" in reconciled.output
    imported = runner.invoke(uploads_cli, ["import-s3", "--prefix", "uploads/users/"])
    assert imported.exit_code == 0, imported.output
    assert "0 videos imported" in imported.output
    unknown = runner.invoke(uploads_cli, ["import-s3", "--user", "nobody@example.com"])
    assert unknown.exit_code == 2


def test_import_command_queues_videos_for_the_worker(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the Redis queue, ``import-s3`` hands each new video to ``vidlib worker`` at
    once (on the in-memory queue the server's sweeper picks the rows up)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'vidlib.db'}"
    upgrade(database_url)
    env = {
        "VIDLIB_DATA_DIR": str(tmp_path),
        "VIDLIB_DATABASE_URL": database_url,
        "VIDLIB_STORAGE_BACKEND": "local",
        "VIDLIB_JWT_SECRET": JWT_SECRET,
        "VIDLIB_REDIS_URL": redis_url,
        "VIDLIB_QUEUE_BACKEND": "redis",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    owner = User(email="owner@example.com", password_hash="!")

    async def arrange() -> str:
        settings = load_settings()
        engine = create_engine(database_url)
        async with create_sessionmaker(engine)() as session, session.begin():
            session.add(owner)
        await engine.dispose()
        store = await open_store(settings)
        key = f"uploads/users/{owner.id}/videos/1700000000_beach.mp4"
        await store.put_bytes(key, mp4_bytes(20_000), content_type="video/mp4")
        await store.close()
        return BackgroundConfig.from_settings(settings).queue_name

    queue_name = asyncio.run(arrange())
    imported = CliRunner().invoke(uploads_cli, ["import-s3"])
    assert imported.exit_code == 0, imported.output
    assert "1 videos imported" in imported.output

    async def imported_id() -> uuid.UUID:
        engine = create_engine(database_url)
        async with create_sessionmaker(engine)() as session:
            video_id = (await session.execute(select(Video.id))).scalar_one()
        await engine.dispose()
        return video_id

    video_id = asyncio.run(imported_id())
    client = sync_redis.Redis.from_url(redis_url)
    messages = client.xrange(queue_name)
    client.close()
    assert len(messages) == 1
    assert str(video_id).encode() in b"".join(messages[0][1].values())
