"""Background work tests: the app with its queue wired, short timings, test videos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import tests.tasks.plugins  # noqa: F401  (registers the test job kinds)
from tests.media.conftest import Videos, videos

__all__ = ["MediaFiles", "media", "videos"]


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
