"""Metadata from generated videos, local files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.media.conftest import Videos
from tests.mediafiles import make_mp4, make_webm
from vidlib.media import MediaLimits, analyze, probe


@pytest.mark.parametrize("name", ["mp4", "mp4_moov_at_end"])
def test_h264_mp4(videos: Videos, name: str) -> None:
    info = probe(str(getattr(videos, name)))
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height) == (320, 240)
    assert (info.coded_width, info.coded_height) == (320, 240)
    assert info.fps == 25.0
    assert info.codec == "h264"
    assert info.audio_codec == "aac"
    assert info.rotation == 0
    assert info.container == "mp4"
    assert info.format_name.startswith("mov,mp4")
    assert info.bitrate is not None
    assert 50_000 < info.bitrate < 2_000_000


def test_vp9_webm(videos: Videos) -> None:
    info = probe(str(videos.webm))
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height) == (320, 240)
    assert info.fps == 25.0
    assert info.codec == "vp9"
    assert info.audio_codec == "opus"
    assert info.container == "webm"
    assert info.format_name == "matroska,webm"


def test_odd_geometry_and_rate(tmp_path: Path) -> None:
    info = probe(str(make_webm(tmp_path / "a.webm", width=176, height=144, fps=15, seconds=1)))
    assert (info.width, info.height, info.fps) == (176, 144, 15.0)
    assert info.duration == pytest.approx(1.0, abs=0.1)


def test_portrait_phone_video_reports_displayed_size(videos: Videos) -> None:
    info = probe(str(videos.portrait))
    assert info.rotation == 90
    assert (info.width, info.height) == (240, 320)
    assert (info.coded_width, info.coded_height) == (320, 240)
    assert info.metadata()["resolution"] == "240x320"
    assert info.metadata()["rotation"] == 90


@pytest.mark.parametrize("rotation", [180, 270])
def test_other_rotations(tmp_path: Path, rotation: int) -> None:
    info = probe(str(make_mp4(tmp_path / "r.mp4", rotation=rotation, audio=False)))
    assert info.rotation == rotation
    swapped = rotation == 270
    assert (info.width, info.height) == ((240, 320) if swapped else (320, 240))


def test_metadata_dict_matches_the_contract(videos: Videos) -> None:
    meta = probe(str(videos.mp4)).metadata()
    assert list(meta) == [
        "resolution",
        "width",
        "height",
        "fps",
        "codec",
        "bitrate",
        "audio_codec",
    ]
    assert meta["resolution"] == "320x240"
    assert meta["codec"] == "h264"
    assert "rotation" not in meta


def test_silent_video_omits_audio_codec(tmp_path: Path) -> None:
    info = probe(str(make_mp4(tmp_path / "silent.mp4", audio=False)))
    assert info.audio_codec is None
    assert "audio_codec" not in info.metadata()


def test_analyze_agrees_with_probe(videos: Videos) -> None:
    for path in (videos.mp4, videos.mp4_moov_at_end, videos.webm, videos.portrait):
        assert analyze(str(path)).info == probe(str(path))


def test_local_bytes_read_are_counted(large_video: Path) -> None:
    report = analyze(str(large_video))
    size = large_video.stat().st_size
    assert report.source_size == size
    assert 0 < report.bytes_read < size / 4
    assert report.read_requests >= 1


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        MediaLimits(max_pixels=0)


def test_fragmented_mp4(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "frag.mp4", fragmented=True, seconds=3)
    report = analyze(str(path))
    assert report.info.duration == pytest.approx(3.0, abs=0.1)
    assert (report.info.width, report.info.height, report.info.codec) == (320, 240, "h264")


def test_concurrent_analyses_in_threads(videos: Videos) -> None:
    paths = [videos.mp4, videos.webm, videos.portrait, videos.mp4_moov_at_end] * 3
    expected = {path: analyze(str(path)).info for path in set(paths)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda p: analyze(str(p)).info, paths))
    assert results == [expected[path] for path in paths]
