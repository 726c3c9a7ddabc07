"""Hostile and broken input fails fast with one clean, permanent MediaError."""

from __future__ import annotations

import os
import pickle
import random
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from tests.media.conftest import Videos
from tests.mediafiles import inflate_webm_resolution, make_m4a, make_mp4, make_webm
from vidlib.media import MediaError, MediaLimits, analyze, probe, thumbnail

FAST = 2.0  # seconds: refusals must not wait for a timeout


def _refused(source: str | Path, limits: MediaLimits = MediaLimits()) -> MediaError:
    """Run all three entry points; each must raise a permanent MediaError quickly."""
    calls: list[Callable[[], object]] = [
        lambda: analyze(str(source), limits=limits),
        lambda: probe(str(source), limits=limits),
        lambda: thumbnail(str(source), duration=None, rotation=0, limits=limits),
    ]
    caught: list[MediaError] = []
    for call in calls:
        started = time.monotonic()
        with pytest.raises(MediaError) as info:
            call()
        assert time.monotonic() - started < FAST
        assert info.value.permanent, info.value
        caught.append(info.value)
    assert len({err.reason for err in caught}) == 1
    return caught[0]


def _assert_plain_sentence(err: MediaError) -> None:
    assert err.reason.endswith(".")
    assert str(err) == err.reason
    for leak in ("ffmpeg", "Errno", "avformat", "Invalid data found", "/"):
        assert leak not in err.reason


def test_ftyp_followed_by_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    rng = random.Random(1)
    path.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + rng.randbytes(20_000))
    err = _refused(path)
    assert err.reason == "The file is not a readable video."
    _assert_plain_sentence(err)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.mp4"
    path.write_bytes(random.Random(2).randbytes(50_000))
    _assert_plain_sentence(_refused(path))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    _refused(path)


def test_truncated_moov_at_end(videos: Videos, tmp_path: Path) -> None:
    data = videos.mp4_moov_at_end.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) - 600])  # cut into the moov at the end
    _refused(path)


def test_truncated_before_moov(videos: Videos, tmp_path: Path) -> None:
    data = videos.mp4_moov_at_end.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    _refused(path)


def test_truncated_webm(videos: Videos, tmp_path: Path) -> None:
    path = tmp_path / "truncated.webm"
    path.write_bytes(videos.webm.read_bytes()[:300])
    _refused(path)


def test_corrupt_frames_after_a_valid_header(videos: Videos, tmp_path: Path) -> None:
    data = bytearray(videos.mp4.read_bytes())
    mdat = data.find(b"mdat") + 4
    rng = random.Random(3)
    data[mdat:] = rng.randbytes(len(data) - mdat)
    path = tmp_path / "scrambled.mp4"
    path.write_bytes(bytes(data))
    err = _refused(path)
    assert err.code == "undecodable"


def test_ffconcat_script_is_refused(videos: Videos, tmp_path: Path) -> None:
    script = f"ffconcat version 1.0\nfile '{videos.mp4}'\nfile '/etc/passwd'\n"
    path = tmp_path / "video.mp4"
    path.write_text(script)
    # The payload is live: plain PyAV follows it to the referenced file.
    with av.open(str(path), options={"safe": "0"}) as container:
        assert container.format.name == "concat"
        assert container.streams.video
    _assert_plain_sentence(_refused(path))


def test_hls_playlist_is_refused(videos: Videos, tmp_path: Path) -> None:
    playlist = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"
        f"#EXTINF:2.0,\nfile://{videos.mp4}\n#EXT-X-ENDLIST\n"
    )
    path = tmp_path / "video.m3u8"
    path.write_text(playlist)
    # The payload is live: plain PyAV opens the referenced file as the playlist's media.
    with av.open(str(path)) as container:
        assert container.format.name == "hls"
        assert next(container.decode(video=0)).width == 320
    _assert_plain_sentence(_refused(path))
    disguised = path.rename(tmp_path / "video.mp4")
    _refused(disguised)


def test_hls_playlist_pointing_at_passwd_only(tmp_path: Path) -> None:
    path = tmp_path / "clip.m3u8"
    path.write_text("#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    _refused(path)


def test_other_containers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 48
        for i in range(5):
            frame = av.VideoFrame(64, 48, "yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert _refused(path).code == "not_video"


def test_oversized_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = inflate_webm_resolution(make_webm(tmp_path / "big.webm", height=256), 65000, 65000)
    err = _refused(path)
    assert err.reason == "The video's resolution 65000x65000 exceeds the limit."
    assert err.code == "too_large"


def test_resolution_over_a_configured_limit(videos: Videos) -> None:
    err = _refused(videos.mp4, MediaLimits(max_pixels=320 * 240 - 1))
    assert err.reason == "The video's resolution 320x240 exceeds the limit."
    assert _refused(videos.mp4, MediaLimits(max_side=300)).code == "too_large"


def test_duration_over_the_limit(videos: Videos) -> None:
    err = _refused(videos.mp4, MediaLimits(max_duration_seconds=1))
    assert err.reason == "The video is longer than the 1-second limit."
    hours = MediaLimits().max_duration_seconds / 3600
    assert hours == 6


def test_read_budget(large_video: Path) -> None:
    limits = MediaLimits(max_read_bytes=10_000)
    # The header and first frame fit in 10 KB, the keyframe 3 s in does not.
    assert probe(str(large_video), limits=limits).codec == "h264"
    with pytest.raises(MediaError) as info:
        analyze(str(large_video), limits=limits)
    assert info.value.permanent
    assert info.value.code == "too_much_data"
    assert _refused(large_video, MediaLimits(max_read_bytes=1_000)).code == "too_much_data"


def test_header_budget(videos: Videos) -> None:
    assert _refused(videos.mp4_moov_at_end, MediaLimits(max_header_bytes=1000)).code == (
        "too_much_data"
    )


def test_audio_only_file(tmp_path: Path) -> None:
    err = _refused(make_m4a(tmp_path / "song.m4a"))
    assert err.reason == "The file contains no video track."


@pytest.mark.parametrize(
    "source",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.mp4",
        "concat:a.mp4|b.mp4",
        "",
        "https:///no-host",
        "video\x00.mp4",
    ],
)
def test_unsupported_locations(source: str) -> None:
    err = _refused(source)
    assert err.code in ("bad_source", "not_found")


def test_missing_file(tmp_path: Path) -> None:
    assert _refused(tmp_path / "nope.mp4").code == "not_found"


def test_directory_and_fifo(tmp_path: Path) -> None:
    assert _refused(tmp_path).code == "bad_source"
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    assert _refused(fifo).code == "bad_source"


def test_failures_leave_pyav_usable(videos: Videos, tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(1000))
    for _ in range(3):
        with pytest.raises(MediaError):
            analyze(str(path))
    assert probe(str(videos.mp4)).codec == "h264"
    with av.open(str(videos.mp4)) as container:
        assert next(container.decode(video=0)).width == 320


def test_short_files_made_with_other_settings_still_work(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "one-frame.mp4", seconds=0.04, audio=False)
    info = probe(str(path))
    assert (info.width, info.height) == (320, 240)


def test_fragmented_mp4_over_the_header_budget_is_refused_not_misread(tmp_path: Path) -> None:
    # FFmpeg indexes every fragment while opening; a budget that cuts that short must
    # fail rather than report the duration of the fragments it saw.
    path = make_mp4(tmp_path / "frag.mp4", fragmented=True, seconds=4, crf=10)
    limit = path.stat().st_size // 2
    assert _refused(path, MediaLimits(max_header_bytes=limit)).code == "too_much_data"


def test_media_error_survives_pickling() -> None:
    # A process-pool worker hands the error back pickled; retry logic needs the flag.
    err = MediaError("Analysing the video took too long.", permanent=False, code="timeout")
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert (copy.reason, copy.permanent, copy.code) == (err.reason, False, "timeout")
    assert str(copy) == err.reason
