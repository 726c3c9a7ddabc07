"""The test-video generator makes what the other tests assume it makes."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest

from tests.mediafiles import inflate_webm_resolution, make_mp4, make_webm, mp4_boxes
from vidlib.media.thumbnail import luma_stats


def _top_level(path: Path) -> list[str]:
    return [kind for kind, _, _ in mp4_boxes(path.read_bytes())]


def test_faststart_puts_moov_before_mdat(tmp_path: Path) -> None:
    boxes = _top_level(make_mp4(tmp_path / "a.mp4"))
    assert boxes.index("moov") < boxes.index("mdat")


def test_moov_at_end(tmp_path: Path) -> None:
    boxes = _top_level(make_mp4(tmp_path / "a.mp4", faststart=False))
    assert boxes.index("mdat") < boxes.index("moov")
    assert boxes[-1] == "moov"


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_stored_as_a_display_matrix_like_a_phone(tmp_path: Path, rotation: int) -> None:
    path = make_mp4(tmp_path / "r.mp4", rotation=rotation, audio=False)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    # FFmpeg reports the matrix's counter-clockwise angle: -90 for a portrait phone clip.
    assert (-frame.rotation) % 360 == rotation
    assert (frame.width, frame.height) == (320, 240)


def test_files_are_small_and_quick(tmp_path: Path) -> None:
    started = time.monotonic()
    mp4 = make_mp4(tmp_path / "a.mp4")
    webm = make_webm(tmp_path / "a.webm")
    assert time.monotonic() - started < 3  # generous for a loaded CI machine
    assert mp4.stat().st_size < 300_000
    assert webm.stat().st_size < 300_000


def test_black_first_frames_are_black(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "b.mp4", black_first_frames=3, audio=False)
    with av.open(str(path)) as container:
        frames = [
            luma_stats(frame) for _, frame in zip(range(4), container.decode(video=0), strict=False)
        ]
    assert all(mean < 20 and stddev < 2 for mean, stddev in frames[:3])
    assert frames[3][0] > 60
    assert frames[3][1] > 30


def test_inflated_webm_claims_the_new_size(tmp_path: Path) -> None:
    path = inflate_webm_resolution(make_webm(tmp_path / "a.webm", height=256), 40000, 30000)
    with av.open(str(path), container_options={"codec_whitelist": "none"}) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (40000, 30000)
