"""Probe + thumbnail of a 60 s 1080p H.264 MP4, next to ffprobe + ffmpegthumbnailer.

    python -m bench.ingest --runs 5

Generates (once; cached under ``bench/.data/``) a 60 s 1920x1080 30 fps H.264 + AAC
MP4 with ``tests.mediafiles.make_mp4`` with its index (``moov``) at the front
(``faststart``), and a stream copy of it with the index at the end; serves them from a
local HTTP server that honours ``Range`` and counts the bytes it sends; then times, on
the same files in the same run (one warm-up, then the median of ``--runs``):

* ``vidlib.media.analyze(url)`` (probe + thumbnail in one open; in-process, as the
  worker runs it) and ``analyze(path)``;
* ``ffprobe`` then ``ffmpegthumbnailer -s 640`` (a new process each, as a script would
  run them), on the same URL and on the same file.

Bytes read: what ``analyze`` reports (bytes received, or read from disk); for the
FFmpeg tools on a file, the process's ``rchar`` less what the tool reads when its input
does not exist; for the FFmpeg tools on a URL, what the server sent: FFmpeg's HTTP
client asks for the rest of the file (``bytes=N-``) and drops the connection when it
seeks, so this counts what was in flight too, as a real network would carry it.
Times are medians; bytes and requests are those of the last run (they barely vary).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.mediafiles import mp4_boxes

from bench.common import ROOT, ensure_command, load_average, machine, markdown_table

DATA = ROOT / "bench" / ".data"
CHUNK = 64 * 1024


class CountingServer:
    """Files of one directory over HTTP/1.1 with single ``Range`` requests; counts bytes sent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bytes_sent = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        """The URL of a file in the root."""
        return f"http://127.0.0.1:{self.port}/{name}"

    def counters(self) -> tuple[int, int]:
        """(bytes sent, requests) so far."""
        with self._lock:
            return self.bytes_sent, self.requests

    def _count(self, sent: int, requests: int = 0) -> None:
        with self._lock:
            self.bytes_sent += sent
            self.requests += requests

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, *, body: bool) -> None:
                owner._count(0, 1)
                name = self.path.lstrip("/").split("?", 1)[0]
                path = owner.root / name
                if "/" in name or not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                size = path.stat().st_size
                first, last = 0, size - 1
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if match:
                    first = int(match.group(1))
                    last = min(int(match.group(2) or size - 1), size - 1)
                    if first >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(last - first + 1))
                self.end_headers()
                if not body:
                    return
                with path.open("rb") as f, contextlib.suppress(OSError):
                    f.seek(first)
                    left = last - first + 1
                    while left > 0:
                        data = f.read(min(CHUNK, left))
                        if not data:
                            break
                        # Counted once written: a client that hangs up stops the count.
                        self.wfile.write(data)
                        owner._count(len(data))
                        left -= len(data)

        return Handler

    def __enter__(self) -> CountingServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class Clip:
    """A generated video and how it was made."""

    label: str
    path: Path

    @property
    def size(self) -> int:
        """Bytes."""
        return self.path.stat().st_size


def make_clips(seconds: int, width: int, height: int, fps: int) -> list[Clip]:
    """The faststart and moov-at-end files (made once, then reused from bench/.data).

    The second is a stream copy of the first with the index written last, so both
    hold the same media and differ only in where the ``moov`` box sits.
    """
    from tests.mediafiles import make_mp4

    DATA.mkdir(parents=True, exist_ok=True)
    stem = f"ingest-{width}x{height}-{fps}fps-{seconds}s"
    front = DATA / f"{stem}-faststart.mp4"
    end = DATA / f"{stem}-moov-end.mp4"
    if not front.exists():
        t0 = time.perf_counter()
        tmp = front.with_suffix(".tmp.mp4")
        make_mp4(tmp, seconds=seconds, width=width, height=height, fps=fps, faststart=True)
        tmp.rename(front)
        print(f"generated {front.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if not end.exists():
        tmp = end.with_suffix(".tmp.mp4")
        _remux(front, tmp)
        tmp.rename(end)
    return [Clip("moov at the front (faststart)", front), Clip("moov at the end", end)]


def _remux(source: Path, target: Path) -> None:
    """Copy every packet into a plain MP4 (index at the end), without re-encoding."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


def _moov_position(path: Path) -> str:
    """Where the index sits, read from the top-level boxes."""
    data = path.read_bytes()
    for kind, offset, size in mp4_boxes(data):
        if kind == "moov":
            return f"moov {size / 1024:.0f} KiB at offset {offset:,}"
    return "no moov"


@dataclass
class Row:
    """Timings of one tool on one clip and source."""

    clip: Clip
    tool: str
    source: str
    seconds: list[float]
    bytes_read: int | None
    requests: int | None

    @property
    def median(self) -> float:
        """Median wall-clock seconds."""
        return statistics.median(self.seconds)


def _timed(
    runs: int, server: CountingServer, action: Callable[[], int]
) -> tuple[list[float], int, int, int]:
    """One warm-up, then ``runs`` timed calls; bytes/requests are of the last call."""
    action()
    times: list[float] = []
    reported = 0
    sent = requests = 0
    for _ in range(runs):
        before_sent, before_requests = server.counters()
        t0 = time.perf_counter()
        reported = action()
        times.append(time.perf_counter() - t0)
        after_sent, after_requests = server.counters()
        sent, requests = after_sent - before_sent, after_requests - before_requests
    return times, reported, sent, requests


def _run_tool(cmd: list[str]) -> int:
    """Run a tool to completion; returns the bytes it read with read(2) (``rchar``).

    The exited child is left unreaped (``WNOWAIT``) while its ``/proc/<pid>/io`` is read.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    rchar = 0
    with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                rchar = int(line.split()[1])
    if proc.wait() != 0:
        raise RuntimeError(f"{cmd[0]} failed: {err.decode(errors='replace')[-500:]}")
    return rchar


def _baseline(cmd: list[str]) -> int:
    """What a tool reads before it opens its input (libraries' data files, locale...)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    rchar = 0
    with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                rchar = int(line.split()[1])
    proc.wait()
    return rchar


def measure(clips: list[Clip], runs: int) -> list[Row]:
    """Every tool on every clip, from the URL and from the file."""
    from vidlib.media import analyze

    ffprobe = ensure_command("ffprobe", "ffmpeg")
    thumbnailer = ensure_command("ffmpegthumbnailer", "ffmpegthumbnailer")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vidlib-bench-ingest-") as tmp:
        out_jpg = str(Path(tmp) / "out.jpg")

        def probe_cmd(target: str) -> list[str]:
            return [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", target]

        def thumb_cmd(target: str) -> list[str]:
            return [thumbnailer, "-i", target, "-o", out_jpg, "-s", "640"]

        missing = str(Path(tmp) / "missing.mp4")
        probe_base = _baseline(probe_cmd(missing))
        thumb_base = _baseline(thumb_cmd(missing))

        with CountingServer(DATA) as server:
            for clip in clips:
                for source, target in (
                    ("HTTP URL", server.url(clip.path.name)),
                    ("local file", str(clip.path)),
                ):

                    def vidlib_once(target: str = target) -> int:
                        report = analyze(target)
                        if not report.thumbnail_jpeg:
                            raise RuntimeError("no thumbnail")
                        return report.bytes_read

                    def probe_once(target: str = target) -> int:
                        return _run_tool(probe_cmd(target)) - probe_base

                    def thumb_once(target: str = target) -> int:
                        return _run_tool(thumb_cmd(target)) - thumb_base

                    def both_once(target: str = target) -> int:
                        return probe_once(target) + thumb_once(target)

                    tools: list[tuple[str, Callable[[], int]]] = [
                        ("vidlib analyze (probe + thumbnail)", vidlib_once),
                        ("ffprobe", probe_once),
                        ("ffmpegthumbnailer -s 640", thumb_once),
                        ("ffprobe + ffmpegthumbnailer", both_once),
                    ]
                    for tool, action in tools:
                        times, reported, sent, requests = _timed(runs, server, action)
                        if source == "local file":
                            rows.append(Row(clip, tool, source, times, reported, None))
                        elif tool.startswith("vidlib"):
                            rows.append(Row(clip, tool, source, times, reported, requests))
                        else:
                            # FFmpeg reads sockets with recv(2), outside rchar: count
                            # what the server sent instead.
                            rows.append(Row(clip, tool, source, times, sent, requests))
    return rows


def command(runs: int, seconds: int, width: int, height: int, fps: int) -> str:
    """The command line for these settings."""
    return (
        f"python -m bench.ingest --runs {runs} --seconds {seconds} --width {width} "
        f"--height {height} --fps {fps}"
    )


@dataclass
class IngestReport:
    """Rows and the markdown of one run."""

    rows: list[Row]
    markdown: str

    def find(self, clip_label_start: str, tool: str, source: str) -> Row:
        """One row by clip, tool and source."""
        for row in self.rows:
            if row.clip.label.startswith(clip_label_start) and (row.tool, row.source) == (
                tool,
                source,
            ):
                return row
        raise KeyError((clip_label_start, tool, source))


def run(
    runs: int = 5, seconds: int = 60, width: int = 1920, height: int = 1080, fps: int = 30
) -> IngestReport:
    """Generate (or reuse) the clips, measure, and build the report."""
    clips = make_clips(seconds, width, height, fps)
    load_before = load_average()
    rows = measure(clips, runs)
    lines = [
        f"Machine: {machine()}; load average before: {load_before}, after: {load_average()}",
        "",
        f"Command: `{command(runs, seconds, width, height, fps)}` (median of {runs} runs after "
        "one warm-up; analyze runs in-process, the FFmpeg tools as new processes; bytes: "
        "see the module's docstring)",
        "",
    ]
    for clip in clips:
        bitrate = clip.size * 8 / seconds / 1e6
        lines.append(
            f"- {clip.label}: `{clip.path.name}`, {clip.size / 1024 / 1024:.1f} MiB "
            f"({bitrate:.1f} Mbit/s), {_moov_position(clip.path)}"
        )
    lines.append("")
    table = markdown_table(
        ["file", "tool", "source", "median s", "bytes read", "of file", "requests"],
        [
            [
                "faststart" if r.clip.label.startswith("moov at the front") else "moov at end",
                r.tool,
                r.source,
                f"{r.median:.3f}",
                "—" if r.bytes_read is None else f"{r.bytes_read:,}",
                "—" if r.bytes_read is None else f"{r.bytes_read / r.clip.size:.1%}",
                "—" if r.requests is None else str(r.requests),
            ]
            for r in rows
        ],
    )
    lines += [table, ""]
    return IngestReport(rows, "\n".join(lines))


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    report = run(args.runs, args.seconds, args.width, args.height, args.fps)
    sys.stdout.write(report.markdown)


if __name__ == "__main__":
    main()
