"""Ingest in-process (the embedded default's in-memory queue): every database and store."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import select

from tests.tasks.conftest import MediaFiles
from tests.tasks.support import Caller, fetch, upload_video, wait_for_video
from vidlib.tasks.models import VideoIngest
from vidlib.tasks.runtime import Background

CASES = {
    "mp4-faststart": ("mp4", "clip.mp4", (320, 240), "h264", 0),
    "mp4-moov-at-end": ("mp4_moov_at_end", "moov at end.mp4", (320, 240), "h264", 0),
    "webm-vp9": ("webm", "clip.webm", (320, 240), "vp9", 0),
    "rotated-phone": ("portrait", "IMG_0001.MOV.mp4", (240, 320), "h264", 90),
}


async def assert_ready(
    client: httpx.AsyncClient,
    video: dict[str, Any],
    size: tuple[int, int],
    codec: str,
    rotation: int,
) -> None:
    """Duration, metadata and a real JPEG thumbnail, as the contract describes."""
    assert video["status"] == "ready", video
    assert video["duration"] == pytest.approx(2.0, abs=0.1)
    meta = video["metadata"]
    width, height = size
    assert (meta["width"], meta["height"]) == size
    assert meta["resolution"] == f"{width}x{height}"
    assert meta["fps"] == pytest.approx(25, abs=0.01)
    assert meta["codec"] == codec
    assert meta.get("rotation", 0) == rotation
    assert "error" not in meta
    assert video["thumbnail_url"]
    resp = await fetch(client, video["thumbnail_url"])
    assert resp.status_code == 200
    image = Image.open(io.BytesIO(resp.content))
    assert image.format == "JPEG"
    # Rotation applied: a portrait video has a portrait thumbnail.
    assert (image.width > image.height) == (width > height)
    assert max(image.size) <= 640


async def test_uploaded_videos_become_ready(
    client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    uploads = {}
    for name, (attr, filename, *_rest) in CASES.items():
        uploads[name] = await upload_video(client, caller, getattr(media, attr), filename)
    for name, (_attr, _filename, size, codec, rotation) in CASES.items():
        body = uploads[name]
        assert body["video"]["status"] == "processing"
        video = await wait_for_video(client, caller, body["video"]["id"])
        await assert_ready(client, video, size, codec, rotation)
        ts, _, _ = body["video"]["s3_key"].rsplit("/", 1)[-1].partition("_")
        # The contract's thumbnail layout, derived from the video's key.
        assert f"/thumbnails/{ts}_" in video["thumbnail_url"]


async def test_corrupt_video_fails_once_without_retries(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    body = await upload_video(client, caller, media.corrupt, "broken.mp4")
    video = await wait_for_video(client, caller, body["video"]["id"])
    assert video["status"] == "failed"
    assert video["metadata"]["error"] == "The file is not a readable video."
    assert video["thumbnail_url"] is None
    # Longer than a retry's backoff would take: still one attempt, nothing queued again.
    await asyncio.sleep(0.8)
    async with app.state.sessionmaker() as session:
        row = await session.get(VideoIngest, uuid.UUID(body["video"]["id"]))
    assert row is not None
    assert row.attempts == 1
    assert row.lease_expires_at is None
    assert row.next_attempt_at is None
    # The video stays usable: it can be read, renamed and deleted like any other.
    renamed = await client.patch(
        f"/api/v1/videos/s3-videos/{video['id']}",
        json={"filename": "still-here.mp4"},
        headers=caller.headers,
    )
    assert renamed.status_code == 200


async def test_user_metadata_survives_processing(
    app: FastAPI,
    client: httpx.AsyncClient,
    caller: Caller,
    media: MediaFiles,
    background: Background,
) -> None:
    body = await upload_video(client, caller, media.mp4, "tagged.mp4")
    video_id = body["video"]["id"]
    await client.patch(
        f"/api/v1/videos/s3-videos/{video_id}",
        json={"metadata": {"album": "holidays"}},
        headers=caller.headers,
    )
    video = await wait_for_video(client, caller, video_id)
    assert video["status"] == "ready"
    assert video["metadata"]["album"] == "holidays"
    assert video["metadata"]["codec"] == "h264"
    # A second delivery of the same task changes nothing.
    async with app.state.sessionmaker() as session:
        before = (await session.execute(select(VideoIngest.attempts))).scalar_one()
    await background.ingest.enqueue(uuid.UUID(video_id))
    await asyncio.sleep(0.3)
    again = await wait_for_video(client, caller, video_id)
    assert again == {**video, "s3_url": again["s3_url"], "thumbnail_url": again["thumbnail_url"]}
    async with app.state.sessionmaker() as session:
        assert (await session.execute(select(VideoIngest.attempts))).scalar_one() == before
