"""Tiny test videos made with PyAV, so no binary media lives in the repository.

Every frame shows colour bars over a grey ramp that slide sideways a few pixels per
frame, so frames differ from each other and none is flat; ``black_first_frames``
replaces the first frames with pure black to exercise "representative frame" logic.
A 2 s 320x240 file is a few tens of KB and takes well under a second to make.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.stream import VideoStream
from PIL import Image, ImageDraw

_BARS = [
    (235, 235, 235),
    (235, 235, 16),
    (16, 235, 235),
    (16, 235, 16),
    (235, 16, 235),
    (235, 16, 16),
    (16, 16, 235),
    (60, 60, 60),
]


def make_mp4(
    path: str | Path,
    *,
    seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    faststart: bool = True,
    rotation: int = 0,
    audio: bool = True,
    black_first_frames: int = 0,
    keyframe_interval: int | None = None,
    crf: int = 28,
    fragmented: bool = False,
) -> Path:
    """Write an H.264 (+ AAC) MP4 and return its path.

    ``faststart=True`` puts the ``moov`` index before the media data, ``False`` leaves
    it at the end of the file, as a phone or a plain muxer writes it. ``rotation`` is
    the clockwise angle a player must turn the picture by (90 for a portrait phone
    video), stored as the track's display matrix the way phones record it.
    ``keyframe_interval`` is in frames (default: one keyframe per second).
    ``fragmented=True`` writes a fragmented MP4 (an empty ``moov``, then one
    ``moof``/``mdat`` pair per keyframe), as browsers' MediaRecorder does.
    """
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90")
    if fragmented:
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    else:
        options = {"movflags": "+faststart"} if faststart else {}
    path = Path(path)
    with av.open(str(path), "w", format="mp4", options=options) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {
            "preset": "ultrafast",
            "crf": str(crf),
            "g": str(keyframe_interval or fps),
            "keyint_min": str(keyframe_interval or fps),
            "sc_threshold": "0",
        }
        if rotation % 360:
            # The display matrix holds the counter-clockwise angle; phones store the
            # inverse of the turn a player applies, so a portrait clip reads as -90.
            video.set_display_rotation(-rotation)
        sound = None
        if audio:
            # Low rate and the fast coder: FFmpeg's AAC encoder dominates the run time.
            sound = out.add_stream("aac", rate=16000)
            sound.options = {"aac_coder": "fast"}
        _write(out, video, sound, seconds, fps, black_first_frames)
    return path


def make_webm(
    path: str | Path,
    *,
    seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    audio: bool = True,
    black_first_frames: int = 0,
    keyframe_interval: int | None = None,
) -> Path:
    """Write a VP9 (+ Opus) WebM and return its path."""
    path = Path(path)
    with av.open(str(path), "w", format="webm") as out:
        video = out.add_stream("libvpx-vp9", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "b": "400k",
            "g": str(keyframe_interval or fps),
            "lag-in-frames": "0",
            "row-mt": "1",
        }
        sound = out.add_stream("libopus", rate=48000) if audio else None
        _write(out, video, sound, seconds, fps, black_first_frames)
    return path


def make_m4a(path: str | Path, *, seconds: float = 1.0) -> Path:
    """Write an audio-only (AAC) MP4: a valid container with no video track."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=16000)
        sound.options = {"aac_coder": "fast"}
        _write_tone(out, sound, seconds)
    return path


def _write(
    out: OutputContainer,
    video: VideoStream,
    sound: AudioStream | None,
    seconds: float,
    fps: int,
    black_first_frames: int,
) -> None:
    count = max(1, round(seconds * fps))
    for index, image in enumerate(_frames(video.width, video.height, count)):
        if index < black_first_frames:
            image = Image.new("RGB", image.size)
        frame = _from_image(image)
        frame.pts = index
        frame.time_base = Fraction(1, fps)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if sound is not None:
        _write_tone(out, sound, count / fps)


def _from_image(image: Image.Image) -> av.VideoFrame:
    """``VideoFrame.from_image``, which PyAV leaves untyped."""
    convert = cast(Callable[[Image.Image], av.VideoFrame], av.VideoFrame.from_image)
    return convert(image)


def _frames(width: int, height: int, count: int) -> Iterator[Image.Image]:
    """Colour bars over a ramp, twice as wide as the frame, seen through a sliding window."""
    pattern = Image.new("RGB", (2 * width, height))
    draw = ImageDraw.Draw(pattern)
    bars_height = max(1, height * 2 // 3)
    bar_width = max(1, (2 * width) // 16)
    for i in range(16):
        draw.rectangle(
            (i * bar_width, 0, (i + 1) * bar_width - 1, bars_height - 1), fill=_BARS[i % 8]
        )
    ramp = Image.linear_gradient("L").rotate(90).resize((2 * width, height - bars_height))
    pattern.paste(Image.merge("RGB", (ramp, ramp, ramp)), (0, bars_height))
    step = max(1, width // 80)
    for index in range(count):
        x = (index * step) % width
        yield pattern.crop((x, 0, x + width, height))


def _write_tone(out: OutputContainer, sound: AudioStream, seconds: float) -> None:
    """A quiet tone, in whatever sample format the encoder takes.

    Ten whole periods fit one encoder frame, so one frame's samples serve them all.
    """
    rate = sound.rate or 48000
    per_frame = sound.codec_context.frame_size or 1024
    fmt = sound.format.name
    pcm = _pcm([0.2 * math.sin(2 * math.pi * 10 * i / per_frame) for i in range(per_frame)], fmt)
    for start in range(0, int(seconds * rate), per_frame):
        frame = av.AudioFrame(format=fmt, layout="mono", samples=per_frame)
        frame.planes[0].update(pcm)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(sound.encode(frame))
    out.mux(sound.encode(None))


def _pcm(samples: list[float], fmt: str) -> bytes:
    if fmt.startswith("flt"):
        return array("f", samples).tobytes()
    if fmt.startswith("s16"):
        return array("h", (int(s * 32767) for s in samples)).tobytes()
    raise ValueError(f"unsupported test sample format {fmt}")


# -- inspecting and damaging files --------------------------------------------------------


def mp4_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """Top-level ISO-BMFF boxes as (type, offset, size)."""
    boxes: list[tuple[str, int, int]] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        elif size == 0:
            size = len(data) - offset
        if size < 8:
            break
        boxes.append((kind.decode("latin-1"), offset, size))
        offset += size
    return boxes


def inflate_webm_resolution(path: str | Path, width: int, height: int) -> Path:
    """Rewrite a VP9 WebM's PixelWidth/PixelHeight and every keyframe's size in place.

    Both the container and the bitstream then claim ``width`` x ``height`` (each at
    most 65535) while the file stays a few KB. The source must have been made with a
    width and height of 256..65535 so both elements are stored on two bytes.
    """
    path = Path(path)
    data = bytearray(path.read_bytes())
    segment = _ebml_child(data, 0, len(data), 0x18538067)
    tracks = _ebml_child(data, segment[0], segment[1], 0x1654AE6B)
    video_track = None
    for entry_id, start, end in _ebml_elements(data, tracks[0], tracks[1]):
        if entry_id != 0xAE or _ebml_uint(data, _ebml_child(data, start, end, 0x83)) != 1:
            continue
        video_track = _ebml_uint(data, _ebml_child(data, start, end, 0xD7))
        video = _ebml_child(data, start, end, 0xE0)
        for element_id, value in ((0xB0, width), (0xBA, height)):
            field = _ebml_child(data, video[0], video[1], element_id)
            if field[1] - field[0] != 2:
                raise ValueError("the source's width and height must be 256..65535")
            data[field[0] : field[1]] = struct.pack(">H", value)
    if video_track is None:
        raise ValueError("no video track")
    patched = 0
    for cluster_id, cluster_start, cluster_end in _ebml_elements(data, segment[0], segment[1]):
        if cluster_id != 0x1F43B675:
            continue
        for block_id, start, _end in _ebml_elements(data, cluster_start, cluster_end):
            # SimpleBlock body: track number (1 byte here), timecode (2), flags (1), frame.
            if block_id == 0xA3 and data[start] & 0x7F == video_track and data[start + 3] & 0x80:
                # A VP9 profile-0 keyframe header: 8 bits of flags, a 24-bit sync code,
                # 4 bits of colour config, then frame_width_minus_1 and
                # frame_height_minus_1 on 16 bits each.
                _write_bits(data, start + 4, 36, 16, width - 1)
                _write_bits(data, start + 4, 52, 16, height - 1)
                patched += 1
    if not patched:
        raise ValueError("no video keyframe found")
    path.write_bytes(bytes(data))
    return path


def _ebml_vint(data: bytearray, at: int, *, keep_marker: bool) -> tuple[int, int]:
    first = data[at]
    length = next(n for n in range(1, 9) if first & (0x80 >> (n - 1)))
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[at + 1 : at + length]:
        value = (value << 8) | byte
    return value, length


def _ebml_elements(data: bytearray, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, body start, body end) of each element between ``start`` and ``end``."""
    at = start
    while at < end:
        element_id, id_len = _ebml_vint(data, at, keep_marker=True)
        size, size_len = _ebml_vint(data, at + id_len, keep_marker=False)
        body = at + id_len + size_len
        yield element_id, body, min(body + size, end)
        at = body + size


def _ebml_child(data: bytearray, start: int, end: int, wanted: int) -> tuple[int, int]:
    for element_id, body, body_end in _ebml_elements(data, start, end):
        if element_id == wanted:
            return body, body_end
    raise ValueError(f"EBML element {wanted:#x} not found")


def _ebml_uint(data: bytearray, span: tuple[int, int]) -> int:
    return int.from_bytes(data[span[0] : span[1]], "big")


def _write_bits(data: bytearray, offset: int, bit: int, width: int, value: int) -> None:
    for i in range(width):
        position = bit + i
        byte, shift = offset + position // 8, 7 - position % 8
        if (value >> (width - 1 - i)) & 1:
            data[byte] |= 1 << shift
        else:
            data[byte] &= ~(1 << shift) & 0xFF
