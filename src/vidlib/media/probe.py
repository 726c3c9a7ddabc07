"""Duration, geometry, codecs and orientation of a video."""

from __future__ import annotations

from contextlib import closing

from av.video.frame import VideoFrame

from vidlib.media import errors
from vidlib.media.container import Header, OpenMedia, frame_rotation, open_media
from vidlib.media.models import MediaInfo, MediaLimits
from vidlib.media.source import Deadline


def probe(source: str, *, limits: MediaLimits = MediaLimits()) -> MediaInfo:
    """Read a video's header and first frame; raises MediaError."""
    deadline = Deadline(limits.timeout_seconds)
    with open_media(source, limits, deadline) as media:
        # The rotation lives in the display matrix FFmpeg attaches to decoded frames,
        # and the decoded size is the bitstream's truth, so one frame is decoded.
        frame = first_frame(media)
        media.check()
        return build_info(media.header, frame)


def first_frame(media: OpenMedia) -> VideoFrame:
    """The first decodable frame from the start of the video."""
    with closing(media.frames(0.0)) as frames:
        for frame in frames:
            return frame
    raise errors.undecodable()


def build_info(header: Header, frame: VideoFrame) -> MediaInfo:
    """Combine the header with a decoded frame's size and rotation."""
    rotation = frame_rotation(frame)
    coded_width, coded_height = frame.width, frame.height
    if rotation in (90, 270):
        width, height = coded_height, coded_width
    else:
        width, height = coded_width, coded_height
    return MediaInfo(
        duration=header.duration,
        width=width,
        height=height,
        coded_width=coded_width,
        coded_height=coded_height,
        fps=header.fps,
        codec=header.codec,
        bitrate=header.bitrate,
        audio_codec=header.audio_codec,
        rotation=rotation,
        container=header.container,
        format_name=header.format_name,
    )
