"""Opening untrusted media with FFmpeg, locked down, and reading its header.

How the input is constrained:

* FFmpeg reads through :class:`~vidlib.media.source.SourceReader`, never a path or URL
  of its own; ``io_open`` refuses any second resource a demuxer might try to open,
  and ``protocol_whitelist`` names only the source's own protocol besides.
* ``format_whitelist`` admits only the MP4/QuickTime family and Matroska/WebM, so an
  HLS playlist, an ffconcat script, an image sequence or any other demuxer that
  follows references is refused after probing, before it reads anything else.
  The MOV demuxer's external data references stay off (``enable_drefs=0``).
* ``codec_whitelist`` matches no decoder and ``probesize`` is minimal, so opening
  parses the container header and nothing more: no frame is decoded until the
  header's resolution, duration and codec have passed :class:`MediaLimits`.
  Frames are then decoded with FFmpeg's ``max_pixels`` set to the limit, which also
  stops a bitstream that claims more than its container did.
* ``max_streams`` caps the streams a file may declare; all but the chosen video
  stream are discarded, so their packets are neither decoded nor, in MP4, read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import NoReturn, cast

import av
import av.error
from av.container import InputContainer
from av.packet import Packet
from av.stream import Discard, Disposition
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from vidlib.media import errors
from vidlib.media.errors import MediaError
from vidlib.media.models import MediaLimits
from vidlib.media.source import Deadline, SourceReader, open_source, protocol_whitelist

log = logging.getLogger("vidlib.media")

ACCEPTED_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm"
# Canonical codec names (FFmpeg's codec descriptors), as phones and cameras record.
SUPPORTED_VIDEO_CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "h263", "mjpeg", "prores"}
)
_WEBM_CODECS = frozenset({"vp8", "vp9", "av1", "opus", "vorbis"})
# A codec_whitelist entry that names no decoder: header parsing only while opening.
_NO_DECODER = "none"
MAX_STREAMS = 32
# Corrupt packets tolerated per decoding pass before giving up on the file.
MAX_DECODE_ERRORS = 8
# Decoder delay (B-frames, hidden VP9 frames) is a handful of packets; allow plenty.
MIN_IDLE_PACKETS = 64


@dataclass(frozen=True, slots=True)
class Header:
    """What the container header says, before any frame is decoded."""

    duration: float | None
    width: int
    height: int
    fps: float | None
    codec: str
    bitrate: int | None
    audio_codec: str | None
    container: str
    format_name: str
    sample_aspect_ratio: Fraction | None


class OpenMedia:
    """An opened, header-checked input with its chosen video stream."""

    def __init__(
        self,
        container: InputContainer,
        stream: VideoStream,
        header: Header,
        reader: SourceReader,
        deadline: Deadline,
        limits: MediaLimits,
    ) -> None:
        self.container = container
        self.stream = stream
        self.header = header
        self.reader = reader
        self.deadline = deadline
        self.limits = limits
        self._at_start = True

    def frames(self, start_seconds: float = 0.0) -> Generator[VideoFrame, None, None]:
        """Decoded frames from the keyframe at or before ``start_seconds``."""
        if start_seconds > 0 or not self._at_start:
            self._seek(start_seconds)
        self._at_start = False
        failures = 0
        produced = 0
        # Packets since the last frame came out: a stream of packets that never yields a
        # picture must not be demuxed to its end.
        idle = 0
        max_idle = max(MIN_IDLE_PACKETS, self.limits.max_decode_frames)
        packets = cast(
            "Generator[Packet[VideoStream], None, None]", self.container.demux(self.stream)
        )
        try:
            while True:
                self.check()
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except Exception as exc:
                    # A demuxing error mid-file ends the pass; it is fatal only if
                    # nothing was decoded at all.
                    if produced:
                        self.check()
                        log.info("media demuxing stopped early: %s", type(exc).__name__)
                        break
                    self.fail(exc, errors.undecodable())
                idle += 1
                if idle > max_idle:
                    if produced:
                        break
                    raise errors.undecodable()
                try:
                    decoded = packet.decode()
                except Exception as exc:
                    failures += 1
                    if failures > MAX_DECODE_ERRORS or self.reader.failure is not None:
                        self.fail(exc, errors.undecodable())
                    continue
                for frame in decoded:
                    self._check_frame(frame)
                    produced += 1
                    idle = 0
                    yield frame
        finally:
            packets.close()
        self.check()

    def check(self) -> None:
        """Raise a recorded read failure, or the timeout once the deadline passes."""
        if self.reader.failure is not None:
            raise self.reader.failure
        self.deadline.check()

    def fail(self, exc: BaseException, default: MediaError) -> NoReturn:
        """Raise the MediaError that best explains ``exc``."""
        raise _explain(exc, self.reader, self.deadline, default) from exc

    def _seek(self, seconds: float) -> None:
        stream = self.stream
        try:
            if stream.time_base:
                offset = int(Fraction(seconds) / stream.time_base)
                self.container.seek(offset + (stream.start_time or 0), stream=stream)
            else:
                self.container.seek(int(seconds * av.time_base))
        except Exception as exc:
            self.check()
            log.info("media seek failed (%s); decoding from the start", type(exc).__name__)
            try:
                self.container.seek(0)
            except Exception as again:
                self.fail(again, errors.undecodable())

    def _check_frame(self, frame: VideoFrame) -> None:
        if not _fits(frame.width, frame.height, self.limits):
            raise errors.resolution_too_large(frame.width, frame.height)


@contextmanager
def open_media(source: str, limits: MediaLimits, deadline: Deadline) -> Iterator[OpenMedia]:
    """Open ``source``, pick its video stream and check the header against ``limits``."""
    reader = open_source(source, limits=limits, deadline=deadline)
    try:
        # The header may only cost so much: it is what the demuxer builds in memory.
        reader.byte_limit = min(limits.max_header_bytes, limits.max_read_bytes)
        container = _open_container(reader, source, deadline)
        try:
            # A failed read looks like end-of-file to the demuxer, which may then
            # report a truncated header as a success.
            if reader.failure is not None:
                raise reader.failure
            reader.byte_limit = limits.max_read_bytes
            stream = _video_stream(container)
            header = _inspect(container, stream, reader)
            if not _fits(header.width, header.height, limits):
                raise errors.resolution_too_large(header.width, header.height)
            if header.duration is not None and header.duration > limits.max_duration_seconds:
                raise errors.too_long(limits.max_duration_seconds)
            _prepare_decoding(container, stream, limits)
            yield OpenMedia(container, stream, header, reader, deadline, limits)
        finally:
            container.close()
    finally:
        reader.close()
        _drain_stashed_error()


def frame_rotation(frame: VideoFrame) -> int:
    """Clockwise degrees (0/90/180/270) a player turns this frame by, from its display matrix."""
    try:
        counter_clockwise = float(frame.rotation)
    except (ValueError, OverflowError, TypeError):
        # A degenerate matrix yields NaN; treat it as no rotation.
        return 0
    if not math.isfinite(counter_clockwise):
        return 0
    return (round(-counter_clockwise / 90) * 90) % 360


def _open_container(reader: SourceReader, source: str, deadline: Deadline) -> InputContainer:
    options = {
        "format_whitelist": ACCEPTED_FORMATS,
        "protocol_whitelist": protocol_whitelist(source),
        "codec_whitelist": _NO_DECODER,
        "probesize": "32",
        "analyzeduration": "1000000",
        "max_streams": str(MAX_STREAMS),
        "enable_drefs": "0",
        "use_absolute_path": "0",
    }

    def refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> NoReturn:
        reader.failure = reader.failure or errors.not_video()
        log.warning("refused a demuxer's attempt to open a second resource")
        raise PermissionError("nested open refused")

    try:
        return av.open(
            reader,
            mode="r",
            container_options=options,
            metadata_errors="replace",
            timeout=max(deadline.remaining(), 0.001),
            io_open=refuse_nested_open,
        )
    except Exception as exc:
        raise _explain(exc, reader, deadline, errors.not_video()) from exc


def _video_stream(container: InputContainer) -> VideoStream:
    for stream in container.streams.video:
        # Cover art is stored as a one-picture "video" stream; it is not the video.
        if not stream.disposition & Disposition.attached_pic:
            return stream
    raise errors.no_video_track()


def _inspect(container: InputContainer, stream: VideoStream, reader: SourceReader) -> Header:
    context = cast(VideoCodecContext | None, stream.codec_context)
    if context is None:
        raise errors.unsupported_codec(None)
    codec = context.codec.canonical_name
    if codec not in SUPPORTED_VIDEO_CODECS:
        raise errors.unsupported_codec(codec)
    duration = _duration(container, stream)
    audio_codec = None
    for audio in container.streams.audio:
        if audio.codec_context is not None:
            audio_codec = audio.codec_context.codec.canonical_name
            break
    return Header(
        duration=duration,
        width=max(0, context.width),
        height=max(0, context.height),
        fps=_fps(stream),
        codec=codec,
        bitrate=_bitrate(container, stream, duration, reader.size),
        audio_codec=audio_codec,
        container=_container_name(container, codec, audio_codec),
        format_name=container.format.name,
        sample_aspect_ratio=stream.sample_aspect_ratio,
    )


def _prepare_decoding(container: InputContainer, stream: VideoStream, limits: MediaLimits) -> None:
    for other in container.streams:
        if other.index != stream.index:
            other.discard = Discard.all
    context = stream.codec_context
    # Applied when PyAV opens the decoder: FFmpeg refuses to allocate larger frames.
    context.options = {"max_pixels": str(limits.max_pixels)}
    context.thread_type = "SLICE"
    context.thread_count = 2


def _fits(width: int, height: int, limits: MediaLimits) -> bool:
    return max(width, height) <= limits.max_side and width * height <= limits.max_pixels


def _duration(container: InputContainer, stream: VideoStream) -> float | None:
    if container.duration is not None and container.duration > 0:
        return round(container.duration / av.time_base, 3)
    if stream.duration is not None and stream.duration > 0 and stream.time_base:
        return round(float(stream.duration * stream.time_base), 3)
    return None


def _fps(stream: VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate.denominator and 0 < rate < 1000:
            return round(float(rate), 3)
    return None


def _bitrate(
    container: InputContainer, stream: VideoStream, duration: float | None, size: int | None
) -> int | None:
    if container.bit_rate and container.bit_rate > 0:
        return int(container.bit_rate)
    if size and duration:
        return int(size * 8 / duration)
    if stream.bit_rate and stream.bit_rate > 0:
        return int(stream.bit_rate)
    return None


def _container_name(container: InputContainer, codec: str, audio_codec: str | None) -> str:
    if container.format.name.startswith("mov"):
        brand = container.metadata.get("major_brand", "").strip().lower()
        if brand == "qt":
            return "mov"
        if brand.startswith(("3gp", "3g2")):
            return brand[:3]
        return "mp4"
    if codec in _WEBM_CODECS and (audio_codec is None or audio_codec in _WEBM_CODECS):
        return "webm"
    return "matroska"


def _explain(
    exc: BaseException, reader: SourceReader, deadline: Deadline, default: MediaError
) -> MediaError:
    """A read failure recorded by the reader wins; then timeouts; then ``default``."""
    if isinstance(exc, MediaError):
        return exc
    if reader.failure is not None:
        return reader.failure
    if isinstance(exc, av.error.ExitError) or deadline.expired:
        return errors.timed_out()
    log.info("media error: %s", type(exc).__name__)
    return default


def _drain_stashed_error() -> None:
    """Clear an exception PyAV stashed from a callback but never re-raised.

    Otherwise it would be raised by the next, unrelated PyAV call on this thread.
    """
    try:
        av.error.err_check(0)
    except Exception as exc:
        log.debug("dropped a stashed PyAV error: %s", type(exc).__name__)
