"""Analysis through real HTTP URLs served with Range support on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from tests.media.conftest import RangeServer, Videos
from vidlib.media import MediaError, MediaLimits, analyze, probe


def _serve(server: RangeServer, path: Path) -> str:
    shutil.copy(path, server.root / path.name)
    return path.name


def test_faststart_mp4_reads_a_fraction_of_the_file(
    range_server: RangeServer, large_video: Path
) -> None:
    name = _serve(range_server, large_video)
    size = large_video.stat().st_size
    report = analyze(range_server.url(name))
    assert report.info.duration == pytest.approx(30.0, abs=0.1)
    assert (report.info.width, report.info.height) == (480, 360)
    assert report.source_size == size
    # Header plus the region around one keyframe, not the file.
    assert report.bytes_read < size / 4
    assert report.bytes_read == range_server.bytes_sent
    assert report.read_requests == len(range_server.requests) <= 3


@pytest.mark.parametrize("name", ["mp4", "mp4_moov_at_end", "webm", "portrait"])
def test_url_matches_local_file(range_server: RangeServer, videos: Videos, name: str) -> None:
    path: Path = getattr(videos, name)
    local = analyze(str(path))
    remote = analyze(range_server.url(_serve(range_server, path)))
    assert remote.info == local.info
    assert remote.thumbnail_jpeg[:2] == b"\xff\xd8"
    assert 0 < remote.bytes_read <= path.stat().st_size


def test_same_host_redirect_is_followed(range_server: RangeServer, videos: Videos) -> None:
    name = _serve(range_server, videos.mp4)
    assert probe(range_server.url(f"same/{name}")).codec == "h264"


def test_redirect_to_another_host_is_refused(range_server: RangeServer, videos: Videos) -> None:
    name = _serve(range_server, videos.mp4)
    with pytest.raises(MediaError) as info:
        analyze(range_server.url(f"elsewhere/{name}"))
    assert info.value.permanent
    assert info.value.code == "redirect_refused"
    assert not any(path == f"/{name}" for path in range_server.requests)


def test_server_without_range_support(range_server: RangeServer, videos: Videos) -> None:
    name = _serve(range_server, videos.mp4_moov_at_end)
    report = analyze(range_server.url(f"norange/{name}"))
    assert report.info.codec == "h264"
    assert report.bytes_read >= videos.mp4_moov_at_end.stat().st_size


@pytest.mark.parametrize(
    ("status", "permanent", "code"),
    [
        (404, True, "not_found"),
        (403, False, "forbidden"),
        (503, False, "unreachable"),
        (500, False, "unreachable"),
        (400, True, "http_error"),
    ],
)
def test_http_errors(range_server: RangeServer, status: int, permanent: bool, code: str) -> None:
    with pytest.raises(MediaError) as info:
        analyze(range_server.url(f"status/{status}"))
    assert (info.value.permanent, info.value.code) == (permanent, code)


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MediaError) as info:
        analyze(f"http://127.0.0.1:{port}/video.mp4")
    assert not info.value.permanent


def test_stalled_server_times_out(range_server: RangeServer, videos: Videos) -> None:
    name = _serve(range_server, videos.mp4)
    started = time.monotonic()
    with pytest.raises(MediaError) as info:
        analyze(range_server.url(f"hang/{name}"), limits=MediaLimits(timeout_seconds=1))
    assert time.monotonic() - started < 3
    assert not info.value.permanent
    assert info.value.code == "timeout"
    assert info.value.reason == "Analysing the video took too long."
