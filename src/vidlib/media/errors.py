"""The one exception media analysis raises, with sentences safe to show a user."""

from __future__ import annotations


class MediaError(Exception):
    """Analysis failed; ``reason`` is a short sentence for the user, never FFmpeg's text.

    ``permanent`` tells the caller whether retrying can help: ``True`` for media that is
    corrupt, unsupported or over a limit, ``False`` for network errors, refused or
    expired access and timeouts. ``code`` is a stable machine-readable name for logs
    and metrics.
    """

    def __init__(self, reason: str, *, permanent: bool = True, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code

    def __reduce__(self) -> tuple[type[MediaError], tuple[str], dict[str, object]]:
        # Keep ``permanent`` and ``code`` when a process pool pickles the error.
        return (type(self), (self.reason,), {"permanent": self.permanent, "code": self.code})

    def __repr__(self) -> str:
        return f"MediaError({self.reason!r}, permanent={self.permanent}, code={self.code!r})"


def not_video() -> MediaError:
    """The bytes are not a video container we accept, or it is damaged."""
    return MediaError("The file is not a readable video.", code="not_video")


def no_video_track() -> MediaError:
    """The container holds no video stream."""
    return MediaError("The file contains no video track.", code="no_video")


def unsupported_codec(name: str | None) -> MediaError:
    """A video codec outside the accepted set (``None``: one FFmpeg does not know)."""
    what = f"The video codec {name}" if name else "The video's codec"
    return MediaError(f"{what} is not supported.", code="unsupported_codec")


def undecodable() -> MediaError:
    """The container is fine but no frame could be decoded."""
    return MediaError("The video's frames could not be decoded.", code="undecodable")


def resolution_too_large(width: int, height: int) -> MediaError:
    """Width x height over the pixel or side limit."""
    return MediaError(
        f"The video's resolution {width}x{height} exceeds the limit.", code="too_large"
    )


def too_long(limit_seconds: float) -> MediaError:
    """Duration over the limit."""
    return MediaError(
        f"The video is longer than the {_human_duration(limit_seconds)} limit.", code="too_long"
    )


def too_much_data() -> MediaError:
    """Analysis would need to read more of the file than allowed."""
    return MediaError("The video needs too much data to be analysed.", code="too_much_data")


def timed_out() -> MediaError:
    """The wall-clock budget ran out (slow storage or a very slow file)."""
    return MediaError("Analysing the video took too long.", permanent=False, code="timeout")


def unreachable() -> MediaError:
    """A network failure or a server error while reading the source."""
    return MediaError(
        "The video could not be read from storage; please try again later.",
        permanent=False,
        code="unreachable",
    )


def access_refused() -> MediaError:
    """401/403, typically an expired presigned URL; a fresh URL may work."""
    return MediaError("Access to the stored video was refused.", permanent=False, code="forbidden")


def not_found() -> MediaError:
    """The source does not exist."""
    return MediaError("The video file was not found.", code="not_found")


def bad_source() -> MediaError:
    """A source that is neither an http(s) URL nor a regular local file."""
    return MediaError("The video's location is not supported.", code="bad_source")


def _human_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours}-hour"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}-minute"
    return f"{seconds:g}-second"
