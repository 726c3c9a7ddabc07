"""The bytes FFmpeg reads: a local file, or an http(s) URL fetched with ranged GETs.

FFmpeg is handed a Python file-like object (:class:`SourceReader`) rather than the
path or URL, so it never opens anything itself. The reader fetches blocks on demand
(64 KiB, doubling while reads stay sequential, up to 1 MiB), keeps the last few in
memory so FFmpeg's back-and-forth over the index costs one fetch, counts every byte
fetched, and enforces the byte budget and the wall-clock deadline.

The reader never raises into FFmpeg: PyAV stashes exceptions raised in I/O callbacks
in thread-local state, where one a demuxer ignores would surface in an unrelated
later call. A failure is recorded in :attr:`SourceReader.failure`, the read reports
end-of-file, and the caller raises the recorded :class:`MediaError` afterwards.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
import time
from collections import OrderedDict
from functools import cache
from typing import Protocol

import httpx

from vidlib.media import errors
from vidlib.media.errors import MediaError
from vidlib.media.models import MediaLimits

log = logging.getLogger("vidlib.media")

MIN_BLOCK = 64 * 1024
MAX_BLOCK = 1024 * 1024
CACHED_BLOCKS = 8
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Deadline:
    """A wall-clock budget measured on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        """Whether the budget is spent."""
        return time.monotonic() >= self._end

    def check(self) -> None:
        """Raise the timeout error once the budget is spent."""
        if self.expired:
            raise errors.timed_out()


class Backend(Protocol):
    """Where blocks come from."""

    size: int | None
    bytes_fetched: int
    requests: int

    def fetch(self, start: int, length: int, budget: int) -> bytes:
        """Up to ``length`` bytes at ``start``; empty at end of file. Raises MediaError."""
        ...

    def close(self) -> None:
        """Release the file or the connection pool."""
        ...


class LocalFile:
    """A regular local file read with ``pread``."""

    def __init__(self, path: str) -> None:
        self.bytes_fetched = 0
        self.requests = 0
        try:
            # O_NONBLOCK so a FIFO in place of the file cannot block the open.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise errors.not_found() from exc
        except (IsADirectoryError, ValueError) as exc:
            # ValueError: a NUL byte in the path.
            raise errors.bad_source() from exc
        except OSError as exc:
            raise errors.unreachable() from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise errors.bad_source()
        self._fd: int | None = fd
        self.size: int | None = info.st_size

    def fetch(self, start: int, length: int, budget: int) -> bytes:
        """Read with pread; the budget caps what one call may return."""
        if self._fd is None:
            raise errors.unreachable()
        self.requests += 1
        try:
            data = os.pread(self._fd, min(length, budget), start)
        except OSError as exc:
            raise errors.unreachable() from exc
        self.bytes_fetched += len(data)
        return data

    def close(self) -> None:
        """Close the descriptor."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class HttpSource:
    """An http(s) URL read with ``Range`` GETs over one keep-alive connection pool.

    Redirects are followed only to the same scheme, host and port: a presigned URL
    that redirects elsewhere is refused rather than letting the storage server point
    the worker at another host. Responses are read raw (``Accept-Encoding: identity``)
    so the counted bytes are the bytes on the wire, minus HTTP framing.
    """

    def __init__(self, url: str, *, limits: MediaLimits, deadline: Deadline) -> None:
        self._url = httpx.URL(url)
        self._origin = _origin(self._url)
        self._limits = limits
        self._deadline = deadline
        self._client = httpx.Client(
            follow_redirects=False,
            headers={"Accept-Encoding": "identity"},
            verify=_tls_context(),
        )
        self._warned_no_ranges = False
        self.size: int | None = None
        self.bytes_fetched = 0
        self.requests = 0

    def fetch(self, start: int, length: int, budget: int) -> bytes:
        """GET ``bytes=start-(start+length-1)``, following same-origin redirects."""
        for _ in range(MAX_REDIRECTS + 1):
            self._deadline.check()
            wait = min(self._limits.io_timeout_seconds, self._deadline.remaining())
            headers = {"Range": f"bytes={start}-{start + length - 1}"}
            self.requests += 1
            try:
                with self._client.stream(
                    "GET", self._url, headers=headers, timeout=httpx.Timeout(wait)
                ) as resp:
                    if resp.status_code in _REDIRECTS:
                        self._follow(resp)
                        continue
                    return self._take(resp, start, length, budget)
            except httpx.TimeoutException as exc:
                raise errors.timed_out() from exc
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise errors.bad_source() from exc
            except httpx.TransportError as exc:
                raise errors.unreachable() from exc
        raise MediaError("The video's storage location redirects too often.", code="redirect_loop")

    def _follow(self, resp: httpx.Response) -> None:
        location = resp.headers.get("location")
        if not location:
            raise errors.unreachable()
        target = self._url.join(location)
        if _origin(target) != self._origin:
            log.warning("refused a redirect of a media URL to another host")
            raise MediaError(
                "The video's storage location redirects to another host.",
                code="redirect_refused",
            )
        self._url = target

    def _take(self, resp: httpx.Response, start: int, length: int, budget: int) -> bytes:
        status = resp.status_code
        skip = 0
        if status == 206:
            first, total = _content_range(resp.headers.get("content-range", ""))
            if first != start:
                raise errors.unreachable()
            if total is not None:
                self.size = total
        elif status == 200:
            # The server ignored Range: the body is the whole file. Read forward to
            # the wanted offset (counted, and capped by the budget) and stop there.
            declared = resp.headers.get("content-length", "")
            if declared.isdigit():
                self.size = int(declared)
            skip = start
            if start and not self._warned_no_ranges:
                self._warned_no_ranges = True
                log.warning("media server ignores Range requests; reading forward instead")
        elif status == 416:
            _, total = _content_range(resp.headers.get("content-range", ""))
            if total is not None:
                self.size = total
            return b""
        else:
            raise _status_error(status)
        return self._read_body(resp, skip, length, budget)

    def _read_body(self, resp: httpx.Response, skip: int, length: int, budget: int) -> bytes:
        wanted = skip + length
        parts: list[bytes] = []
        received = 0
        for chunk in resp.iter_raw(MIN_BLOCK):
            received += len(chunk)
            self.bytes_fetched += len(chunk)
            parts.append(chunk)
            if received >= wanted:
                break
            if received > budget:
                raise errors.too_much_data()
            self._deadline.check()
        return b"".join(parts)[skip:wanted]

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class SourceReader:
    """The file-like object PyAV reads: cached blocks over a :class:`Backend`."""

    # PyAV names the container after this; a neutral name keeps a user-chosen file
    # extension from steering FFmpeg's format probe.
    name = "input"

    def __init__(self, backend: Backend, *, deadline: Deadline, byte_limit: int) -> None:
        self._backend = backend
        self._deadline = deadline
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._pos = 0
        self._last_end = -1
        self._block = MIN_BLOCK
        self.byte_limit = byte_limit
        self.failure: MediaError | None = None

    @property
    def bytes_read(self) -> int:
        """Bytes fetched from the source so far."""
        return self._backend.bytes_fetched

    @property
    def requests(self) -> int:
        """Reads (or HTTP requests) issued to the source so far."""
        return self._backend.requests

    @property
    def size(self) -> int | None:
        """The source's size, once known."""
        return self._backend.size

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable: that is what lets FFmpeg jump to the index and keyframes."""
        return True

    def tell(self) -> int:
        """Current position."""
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position; returns it, or -1 where it cannot be known."""
        if whence == os.SEEK_SET:
            target = offset
        elif whence == os.SEEK_CUR:
            target = self._pos + offset
        elif whence == os.SEEK_END:
            if self._backend.size is None and self.failure is None and not self._blocks:
                here = self._pos
                self._pos = 0
                self.read(1)  # the first response tells the size
                self._pos = here
            if self._backend.size is None:
                return -1
            target = self._backend.size + offset
        else:
            return -1
        if target < 0:
            return -1
        self._pos = target
        return target

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes at the position; empty at end of file or after a failure."""
        if self.failure is not None:
            return b""
        try:
            return self._read(n if n > 0 else MAX_BLOCK)
        except MediaError as exc:
            self.failure = exc
        except Exception as exc:  # nothing may propagate into FFmpeg
            log.warning("unexpected error reading media", exc_info=exc)
            self.failure = errors.unreachable()
        return b""

    def close(self) -> None:
        """Release the backend."""
        self._blocks.clear()
        self._backend.close()

    def _read(self, n: int) -> bytes:
        size = self._backend.size
        if size is not None and self._pos >= size:
            return b""
        found = self._cached(self._pos)
        if found is None:
            found = self._load(self._pos)
            if found is None:
                return b""
        start, block = found
        offset = self._pos - start
        out = block[offset : offset + n]
        self._pos += len(out)
        return out

    def _cached(self, pos: int) -> tuple[int, bytes] | None:
        for start, block in self._blocks.items():
            if start <= pos < start + len(block):
                self._blocks.move_to_end(start)
                return start, block
        return None

    def _load(self, pos: int) -> tuple[int, bytes] | None:
        self._deadline.check()
        # Grow the block while FFmpeg reads straight on (demuxing, a big index); start
        # small again after a jump, which is usually a seek to an index or keyframe.
        self._block = min(self._block * 2, MAX_BLOCK) if pos == self._last_end else MIN_BLOCK
        end = pos + self._block
        size = self._backend.size
        if size is not None:
            end = min(end, size)
        later = [start for start in self._blocks if start > pos]
        if later:
            end = min(end, min(later))
        budget = self.byte_limit - self._backend.bytes_fetched
        if budget <= 0:
            raise errors.too_much_data()
        end = min(end, pos + budget)
        data = self._backend.fetch(pos, end - pos, budget)
        if self._backend.bytes_fetched > self.byte_limit:
            raise errors.too_much_data()
        if not data:
            size = self._backend.size
            if size is not None and pos < size:
                # The server promised more than it delivered.
                raise errors.unreachable()
            return None
        self._last_end = pos + len(data)
        self._blocks[pos] = data
        while len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return pos, data


def open_source(source: str, *, limits: MediaLimits, deadline: Deadline) -> SourceReader:
    """A reader for an http(s) URL or a local path; other schemes are refused."""
    backend: Backend
    if not source:
        raise errors.bad_source()
    scheme = source_scheme(source)
    if scheme in ("http", "https"):
        try:
            backend = HttpSource(source, limits=limits, deadline=deadline)
        except httpx.InvalidURL as exc:
            raise errors.bad_source() from exc
    elif scheme:
        raise errors.bad_source()
    else:
        backend = LocalFile(source)
    return SourceReader(backend, deadline=deadline, byte_limit=limits.max_read_bytes)


def source_scheme(source: str) -> str:
    """``http``/``https`` for URLs, another scheme for other URLs, ``""`` for paths."""
    scheme, separator, _ = source.partition("://")
    if not separator:
        return ""
    return scheme.lower() or "?"


def protocol_whitelist(source: str) -> str:
    """FFmpeg protocols the source's own scheme would need: nothing more."""
    scheme = source_scheme(source)
    if scheme == "https":
        return "https,tls,tcp"
    if scheme == "http":
        return "http,tcp"
    return "file"


@cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for all analyses: building one costs ~50 ms of CPU."""
    return httpx.create_ssl_context()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme)


def _content_range(value: str) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes a-b/total`` or ``bytes */total``."""
    unit, _, spec = value.strip().partition(" ")
    if unit.lower() != "bytes" or "/" not in spec:
        return None, None
    span, _, total = spec.partition("/")
    first = span.partition("-")[0]
    return (
        int(first) if first.isdigit() else None,
        int(total) if total.isdigit() else None,
    )


def _status_error(status: int) -> MediaError:
    if status in (404, 410):
        return errors.not_found()
    if status in (401, 403):
        return errors.access_refused()
    if status in (408, 425, 429) or status >= 500:
        return errors.unreachable()
    return MediaError("The video could not be read from storage.", code="http_error")
