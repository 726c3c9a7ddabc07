"""Limits, results and the metadata dictionary of the API contract."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """Bounds on the work one analysis of untrusted media may do."""

    # 8192x8192 covers 8K (7680x4320) with room; FFmpeg's own ceiling is about 16k x 16k.
    max_pixels: int = 8192 * 8192
    max_side: int = 16384
    max_duration_seconds: float = 6 * 3600
    # Frames decoded in search of a representative thumbnail, across all seek points.
    max_decode_frames: int = 120
    # Wall-clock budget for the whole call, network included.
    timeout_seconds: float = 60.0
    # Longest single network wait (connect, or silence while reading a response).
    io_timeout_seconds: float = 15.0
    # Bytes the demuxer may read while parsing the header; bounds the index it builds
    # in memory (a 6-hour phone video's moov is around 10 MB).
    max_header_bytes: int = 64 * MIB
    # Bytes one analysis may read from the source in total.
    max_read_bytes: int = 256 * MIB

    def __post_init__(self) -> None:
        for name in (
            "max_pixels",
            "max_side",
            "max_duration_seconds",
            "max_decode_frames",
            "timeout_seconds",
            "io_timeout_seconds",
            "max_header_bytes",
            "max_read_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"MediaLimits.{name} must be positive")


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a video is: duration, geometry, codecs and orientation."""

    duration: float | None
    # As displayed: swapped relative to the coded size for 90/270 degree rotation.
    width: int
    height: int
    coded_width: int
    coded_height: int
    fps: float | None
    codec: str
    bitrate: int | None
    audio_codec: str | None
    # Clockwise degrees a player turns the coded picture by: 0, 90, 180 or 270.
    rotation: int
    # Friendly container name ("mp4", "mov", "3gp", "webm", "matroska").
    container: str
    # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2".
    format_name: str

    @property
    def resolution(self) -> str:
        """Displayed size as ``WIDTHxHEIGHT``."""
        return f"{self.width}x{self.height}"

    def metadata(self) -> dict[str, str | int | float]:
        """The contract's ``metadata`` object; absent optional values are left out.

        ``fps``, ``bitrate`` and ``audio_codec`` are omitted when unknown, ``rotation``
        when the video is not rotated.
        """
        out: dict[str, str | int | float] = {
            "resolution": self.resolution,
            "width": self.width,
            "height": self.height,
        }
        if self.fps is not None:
            out["fps"] = self.fps
        out["codec"] = self.codec
        if self.bitrate is not None:
            out["bitrate"] = self.bitrate
        if self.audio_codec is not None:
            out["audio_codec"] = self.audio_codec
        if self.rotation:
            out["rotation"] = self.rotation
        return out


@dataclass(frozen=True, slots=True)
class MediaReport:
    """Everything one analysis produced, plus what it cost in reads."""

    info: MediaInfo
    thumbnail_jpeg: bytes
    # Bytes fetched from the source: file reads, or HTTP response bytes for URLs.
    bytes_read: int
    # The source's size when known (always for local files and range-capable servers).
    source_size: int | None
    # Number of reads issued to the source (HTTP requests for URLs).
    read_requests: int
