"""Generated videos and a tiny Range-capable HTTP server for the media tests."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.mediafiles import make_mp4, make_webm


@dataclass
class Videos:
    """Paths of the shared, generated test videos."""

    mp4: Path
    mp4_moov_at_end: Path
    webm: Path
    portrait: Path
    black_start: Path


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    """One set of test videos per test run (each takes well under a second to make)."""
    root = tmp_path_factory.mktemp("videos")
    return Videos(
        mp4=make_mp4(root / "faststart.mp4"),
        mp4_moov_at_end=make_mp4(root / "moov-at-end.mp4", faststart=False),
        webm=make_webm(root / "clip.webm"),
        portrait=make_mp4(root / "portrait.mp4", rotation=90, faststart=False),
        black_start=make_mp4(root / "black-start.mp4", black_first_frames=20),
    )


@pytest.fixture(scope="session")
def large_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 0.5 MB, 30 s, all keyframes: several fetches' worth, so a whole read shows."""
    return make_mp4(
        tmp_path_factory.mktemp("large") / "large.mp4",
        seconds=30,
        fps=5,
        crf=10,
        width=480,
        height=360,
        keyframe_interval=1,
        audio=False,
    )


@dataclass
class RangeServer:
    """A local HTTP server for files in ``root``, honouring single ``Range`` requests.

    Paths: ``/<name>`` serves a file; ``/norange/<name>`` ignores Range;
    ``/same/<name>`` redirects to ``/<name>`` on the same host; ``/elsewhere/<name>``
    redirects to the same file via ``localhost`` (another host); ``/status/<code>``
    answers with that status; ``/hang/<name>`` stalls until the test ends.
    """

    root: Path
    port: int = 0
    requests: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """An http URL on this server."""
        return f"http://{host}:{self.port}/{path.lstrip('/')}"


def _handler(server: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            server.requests.append(self.path)
            kind, _, rest = self.path.lstrip("/").partition("/")
            if kind == "status":
                self._reply(int(rest), b"")
            elif kind == "same":
                self._redirect(f"/{rest}")
            elif kind == "elsewhere":
                self._redirect(server.url(rest, host="localhost"))
            elif kind == "hang":
                server.release.wait(30)
                self._reply(503, b"")
            elif kind == "norange":
                self._file(rest, ranges=False)
            else:
                self._file(self.path.lstrip("/"), ranges=True)

        def _file(self, name: str, *, ranges: bool) -> None:
            path = server.root / name
            if "/" in name or not path.is_file():
                self._reply(404, b"")
                return
            data = path.read_bytes()
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if not ranges or match is None:
                self._reply(200, data)
                return
            first = int(match.group(1))
            last = min(int(match.group(2) or len(data) - 1), len(data) - 1)
            if first >= len(data):
                self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            self._reply(
                206, data[first : last + 1], {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
            )

        def _redirect(self, location: str) -> None:
            self._reply(302, b"", {"Location": location})

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
                server.bytes_sent += len(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client stopped reading, which is what a partial read does.
                pass

    return Handler


@pytest.fixture
def range_server(tmp_path: Path) -> Iterator[RangeServer]:
    """A Range-capable HTTP server on 127.0.0.1, serving files put in its root."""
    state = RangeServer(root=tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
