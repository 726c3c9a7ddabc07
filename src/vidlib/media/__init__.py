"""Media analysis: duration, metadata and a thumbnail from an untrusted video.

Everything here is synchronous and CPU/IO-bound; the worker runs it in a thread or a
process, never on the API's event loop.

Reading the source. Both local paths and presigned http(s) URLs are read through a
Python file-like object handed to FFmpeg (see :mod:`vidlib.media.source`), rather
than letting FFmpeg open the path or URL itself. For URLs this reads less and is
safer than FFmpeg's own HTTP client:

* each fetch is a bounded ``Range`` GET (64 KiB growing to 1 MiB while reads stay
  sequential), so a keyframe seek costs one small request, whereas FFmpeg's client
  opens ``bytes=N-`` responses and leaves them streaming until it seeks again;
* recently fetched blocks are cached, so FFmpeg re-reading the index is free;
* redirects are followed only within the URL's own scheme, host and port;
* byte and wall-clock budgets are enforced on every fetch, and every byte received
  is counted, which is what :attr:`MediaReport.bytes_read` reports (for local files,
  the bytes read from disk).

Hostile input. Only the MP4/QuickTime and Matroska/WebM demuxers are allowed, no
demuxer may open a second resource, the header's resolution, duration and codec are
checked before any frame is decoded, and decoding runs with FFmpeg's ``max_pixels``
at the limit (see :mod:`vidlib.media.container`). Every failure is a
:class:`MediaError` whose message is safe to show the user and whose ``permanent``
flag says whether a retry can help.
"""

from vidlib.media.analysis import analyze
from vidlib.media.container import ACCEPTED_FORMATS, SUPPORTED_VIDEO_CODECS
from vidlib.media.errors import MediaError
from vidlib.media.models import MediaInfo, MediaLimits, MediaReport
from vidlib.media.probe import probe
from vidlib.media.thumbnail import thumbnail

__all__ = [
    "ACCEPTED_FORMATS",
    "SUPPORTED_VIDEO_CODECS",
    "MediaError",
    "MediaInfo",
    "MediaLimits",
    "MediaReport",
    "analyze",
    "probe",
    "thumbnail",
]
