"""Test data: videos inserted straight through the repository (no upload needed)."""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vidlib.videos.models import Video, VideoStatus
from vidlib.videos.repository import VideoRepository

WORDS = ["beach", "Birthday", "cat", "drone", "sunset", "Trip", "wedding", "game", "city", "Dog"]


def make_video(user_id: uuid.UUID, n: int, **overrides: Any) -> Video:
    """A realistic ready video; ``overrides`` set any column (``metadata`` is accepted)."""
    rng = random.Random(n)
    created = overrides.pop("created_at", datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=n))
    word = WORDS[n % len(WORDS)]
    filename = overrides.pop("filename", f"{word}_{n:05d}.mp4")
    ts = int(created.timestamp())
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    key = f"uploads/users/{user_id}/videos/{ts}_{n}_{safe}"
    metadata = overrides.pop(
        "metadata",
        {"resolution": "1920x1080", "width": 1920, "height": 1080, "fps": 30, "codec": "h264"},
    )
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "filename": filename,
        "original_filename": overrides.pop("original_filename", f"{word.title()} {n}.mp4"),
        "s3_key": key,
        "s3_url": f"s3://bucket/{key}",
        "s3_bucket": "bucket",
        "content_type": "video/mp4",
        "file_size": rng.randint(1_000_000, 500_000_000),
        "duration": round(rng.uniform(1, 600), 2),
        "thumbnail_s3_key": f"uploads/users/{user_id}/thumbnails/{ts}_{n}_thumb.jpg",
        "media_metadata": metadata,
        "sha256": hashlib.sha256(f"{user_id}-{n}".encode()).hexdigest(),
        "status": VideoStatus.ready.value,
        "created_at": created,
        "updated_at": created,
    }
    values.update(overrides)
    return Video(**values)


async def seed_videos(
    sessionmaker: async_sessionmaker[AsyncSession],
    user_id: uuid.UUID,
    count: int,
    *,
    start: int = 0,
    **overrides: Any,
) -> list[Video]:
    """Insert ``count`` videos for a user through the repository and commit."""
    videos = [make_video(user_id, start + i, **dict(overrides)) for i in range(count)]
    async with sessionmaker() as session, session.begin():
        await VideoRepository(session).add_many(videos)
    return videos
