"""Probe and thumbnail in one pass over one opened input."""

from __future__ import annotations

from vidlib.media.container import open_media
from vidlib.media.models import MediaLimits, MediaReport
from vidlib.media.probe import build_info
from vidlib.media.source import Deadline
from vidlib.media.thumbnail import encode_jpeg, pick_frame


def analyze(source: str, *, limits: MediaLimits = MediaLimits()) -> MediaReport:
    """Metadata and a thumbnail from a single open of ``source``; raises MediaError.

    The thumbnail's frame also supplies the rotation and decoded size, so the start
    of the file is never decoded and, for a remote file, only the header and the
    region around the chosen keyframe are fetched.
    """
    deadline = Deadline(limits.timeout_seconds)
    with open_media(source, limits, deadline) as media:
        frame = pick_frame(media, media.header.duration)
        media.check()
        info = build_info(media.header, frame)
        jpeg = encode_jpeg(frame, info.rotation, media.header.sample_aspect_ratio)
        reader = media.reader
        return MediaReport(
            info=info,
            thumbnail_jpeg=jpeg,
            bytes_read=reader.bytes_read,
            source_size=reader.size,
            read_requests=reader.requests,
        )
