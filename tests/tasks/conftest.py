"""Background work tests: the app with its queue wired, short timings, test videos."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

import tests.tasks.plugins  # noqa: F401  (registers the test job kinds)
from tests.media.conftest import Videos, videos
from tests.tasks.support import Caller, background_app, fast_config, new_user
from vidlib.tasks.config import BackgroundConfig
from vidlib.tasks.runtime import Background

__all__ = ["MediaFiles", "background", "caller", "config", "media", "videos"]


@pytest.fixture
def config() -> BackgroundConfig:
    """The background configuration of a test (modules override this)."""
    return fast_config()


@pytest.fixture
async def background(app: FastAPI, config: BackgroundConfig) -> AsyncIterator[Background]:
    """The app's background work, started with ``config``."""
    async for background in background_app(app, config):
        yield background


@pytest.fixture
async def caller(app: FastAPI, background: Background) -> Caller:
    """A user of the app (with background work running)."""
    return await new_user(app)


@dataclass(frozen=True)
class MediaFiles:
    """The media tests' generated videos (2 s, 320x240, 25 fps) and a corrupt one."""

    mp4: Path
    mp4_moov_at_end: Path
    webm: Path
    portrait: Path
    corrupt: Path


@pytest.fixture(scope="session")
def media(videos: Videos, tmp_path_factory: pytest.TempPathFactory) -> MediaFiles:
    """The shared test videos, plus one whose header is noise."""
    corrupt = tmp_path_factory.mktemp("task-media") / "corrupt.mp4"
    data = videos.mp4.read_bytes()
    # A valid ``ftyp`` (so the upload accepts it), then noise where the boxes were.
    corrupt.write_bytes(data[:32] + bytes((b * 7 + 13) % 256 for b in data[32:4096]))
    return MediaFiles(
        mp4=videos.mp4,
        mp4_moov_at_end=videos.mp4_moov_at_end,
        webm=videos.webm,
        portrait=videos.portrait,
        corrupt=corrupt,
    )
