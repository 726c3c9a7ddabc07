"""Thumbnails: valid JPEGs of a representative, correctly oriented frame."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageStat

from tests.media.conftest import Videos
from tests.mediafiles import make_mp4, make_webm
from vidlib.media import MediaLimits, analyze, probe, thumbnail


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _mean_luma(image: Image.Image) -> float:
    return float(ImageStat.Stat(image.convert("L")).mean[0])


def test_thumbnail_is_a_jpeg(videos: Videos) -> None:
    image = _image(analyze(str(videos.mp4)).thumbnail_jpeg)
    assert image.format == "JPEG"
    assert image.size == (320, 240)
    assert _mean_luma(image) > 40


def test_webm_thumbnail(videos: Videos) -> None:
    image = _image(analyze(str(videos.webm)).thumbnail_jpeg)
    assert image.format == "JPEG"
    assert image.size == (320, 240)


def test_large_frames_are_scaled_to_640(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "hd.mp4", width=1280, height=720, seconds=0.5, audio=False)
    image = _image(analyze(str(path)).thumbnail_jpeg)
    assert image.size == (640, 360)


def test_tall_frames_are_scaled_on_their_longest_side(tmp_path: Path) -> None:
    path = make_webm(tmp_path / "tall.webm", width=360, height=800, seconds=0.5, audio=False)
    image = _image(analyze(str(path)).thumbnail_jpeg)
    assert max(image.size) == 640
    assert image.size == (288, 640)


def test_portrait_thumbnail_is_upright(videos: Videos) -> None:
    image = _image(analyze(str(videos.portrait)).thumbnail_jpeg)
    assert image.size == (240, 320)
    # The coded frame has colour bars on top and a dark-to-light ramp at the bottom;
    # turned 90 degrees clockwise the ramp is on the left, dark end at the top.
    left = image.crop((0, 0, 60, 320)).convert("L")
    right = image.crop((100, 0, 240, 320))
    assert ImageStat.Stat(right).stddev[0] > 40  # bars in colour
    assert left.getpixel((30, 10)) < left.getpixel((30, 300))  # type: ignore[operator]


def test_standalone_thumbnail_uses_the_given_rotation(videos: Videos) -> None:
    info = probe(str(videos.portrait))
    image = _image(thumbnail(str(videos.portrait), duration=info.duration, rotation=info.rotation))
    assert image.size == (240, 320)
    unrotated = _image(thumbnail(str(videos.portrait), duration=None, rotation=0))
    assert unrotated.size == (320, 240)


def test_black_lead_in_is_skipped(videos: Videos) -> None:
    # 20 black frames (0.8 s) run past the 10% seek point (0.2 s).
    image = _image(analyze(str(videos.black_start)).thumbnail_jpeg)
    assert _mean_luma(image) > 40


def test_black_lead_in_past_the_first_seek_point(tmp_path: Path) -> None:
    # 10 s with 4 s of black; with a 20-frame budget the first seek point (1 s) only
    # sees black, so the second (the middle, 5 s) has to find the picture.
    path = make_mp4(tmp_path / "b.mp4", seconds=10, fps=10, black_first_frames=40, audio=False)
    report = analyze(str(path), limits=MediaLimits(max_decode_frames=20))
    assert _mean_luma(_image(report.thumbnail_jpeg)) > 40


def test_an_all_black_video_still_gets_a_thumbnail(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "black.mp4", seconds=1, black_first_frames=25, audio=False)
    image = _image(analyze(str(path)).thumbnail_jpeg)
    assert image.size == (320, 240)
    assert _mean_luma(image) < 10
