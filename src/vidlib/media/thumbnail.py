"""Picking a representative frame and encoding it as a JPEG thumbnail.

The frame comes from about 10% into the video (at most 15 s in): far enough to pass
a black lead-in or a title fade, near enough that a keyframe seek reads one small
region of a long remote file. A few frames are decoded from the keyframe on; the
first that is neither near-black nor flat wins, and if none qualifies a second seek
to the middle is tried before settling for the most detailed frame seen.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import closing
from fractions import Fraction
from typing import cast

from av.video.frame import VideoFrame
from PIL import Image, ImageStat

from vidlib.media import errors
from vidlib.media.container import OpenMedia, open_media
from vidlib.media.models import MediaLimits
from vidlib.media.source import Deadline

MAX_SIDE = 640
JPEG_QUALITY = 80
SEEK_FRACTION = 0.1
MAX_SEEK_SECONDS = 15.0
# Luma statistics (0..255) measured on a 64-pixel-wide copy of the frame.
MIN_MEAN_LUMA = 24.0
MIN_LUMA_STDDEV = 8.0
_SAMPLE_WIDTH = 64

_TRANSPOSE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def thumbnail(
    source: str,
    *,
    duration: float | None,
    rotation: int,
    limits: MediaLimits = MediaLimits(),
) -> bytes:
    """A JPEG of a representative frame, turned by ``rotation``, longest side <= 640 px."""
    deadline = Deadline(limits.timeout_seconds)
    with open_media(source, limits, deadline) as media:
        frame = pick_frame(media, duration if duration is not None else media.header.duration)
        media.check()
        return encode_jpeg(frame, rotation, media.header.sample_aspect_ratio)


def seek_points(duration: float | None) -> list[float]:
    """Where to look for a frame: ~10% in (capped), then the middle as a second chance."""
    if not duration or duration <= 0:
        return [0.0]
    first = min(duration * SEEK_FRACTION, MAX_SEEK_SECONDS)
    middle = duration / 2
    return [first, middle] if middle > first + 1.0 else [first]


def pick_frame(media: OpenMedia, duration: float | None) -> VideoFrame:
    """The first representative frame near the seek points, else the most detailed one."""
    points = seek_points(duration)
    per_point = max(1, media.limits.max_decode_frames // len(points))
    best: tuple[tuple[float, float], VideoFrame] | None = None
    for point in points:
        with closing(media.frames(point)) as frames:
            for taken, frame in enumerate(frames, start=1):
                mean, stddev = luma_stats(frame)
                if mean >= MIN_MEAN_LUMA and stddev >= MIN_LUMA_STDDEV:
                    return frame
                if best is None or (stddev, mean) > best[0]:
                    best = ((stddev, mean), frame)
                if taken >= per_point:
                    break
    if best is None:
        raise errors.undecodable()
    return best[1]


def luma_stats(frame: VideoFrame) -> tuple[float, float]:
    """Mean and standard deviation of the frame's brightness, 0..255."""
    width = _SAMPLE_WIDTH
    height = max(1, round(frame.height * width / max(1, frame.width)))
    image = _to_image(frame, width=width, height=height).convert("L")
    stat = ImageStat.Stat(image)
    return float(stat.mean[0]), float(stat.stddev[0])


def encode_jpeg(
    frame: VideoFrame,
    rotation: int,
    sample_aspect_ratio: Fraction | None = None,
    *,
    max_side: int = MAX_SIDE,
    quality: int = JPEG_QUALITY,
) -> bytes:
    """Scale (honouring non-square pixels), rotate clockwise by ``rotation``, encode."""
    display_width = float(frame.width)
    if sample_aspect_ratio and Fraction(1, 4) <= sample_aspect_ratio <= 4:
        display_width *= float(sample_aspect_ratio)
    scale = min(1.0, max_side / max(display_width, frame.height, 1))
    width = max(1, round(display_width * scale))
    height = max(1, round(frame.height * scale))
    # Scaling in swscale on the YUV frame avoids an RGB copy at full resolution.
    image = _to_image(frame, width=width, height=height, interpolation="AREA")
    turn = _TRANSPOSE.get((round(rotation / 90) * 90) % 360)
    if turn is not None:
        image = image.transpose(turn)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _to_image(frame: VideoFrame, **reformat: object) -> Image.Image:
    """``VideoFrame.to_image`` (untyped in PyAV): reformat to RGB at the given size."""
    convert = cast(Callable[..., Image.Image], frame.to_image)
    return convert(**reformat)
