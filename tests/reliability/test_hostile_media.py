"""Hostile media through the real upload and ingest path: refused, or failed once.

The requirement: a file whose header claims 100000x100000 pixels, an ``ftyp``
followed by garbage, an AVI or HLS playlist that references ``file://`` or
``169.254.169.254`` — each ends as a ``failed`` video with a reason, with no crash
loop, no file read and no outbound request.

What happens to each kind, on every database and storage backend:

* Raw HLS playlists, ffconcat scripts and AVI files (the GAB2 subtitle carrying an
  HLS playlist, the classic FFmpeg SSRF shape) never become videos: upload sniffing
  refuses them with 415, streamed and direct alike (a direct upload's bytes are
  sniffed from storage at ``/complete``), and nothing is kept.
* Files that pass sniffing are stored, ingested once, and end ``failed`` with
  ``metadata.error``: a WebM whose header claims 100000x100000, an ``ftyp`` box
  followed by garbage, the same playlists, scripts and AVI behind an ``ftyp`` or a
  WebM header, and a QuickTime file whose data reference (an alias record) points at
  a local file — a payload plain FFmpeg follows when drefs are enabled.

How "no file read" is observed: the payloads reference a canary, a valid video alone
in its own directory, by ``file://`` URL and by absolute path. An inotify watch on
that directory (``IN_OPEN | IN_ACCESS``) records every open or read of anything in
it by any thread or process, whether from C (FFmpeg) or Python, including opens
with ``O_NONBLOCK`` that a polling check could miss. Positive controls: plain
FFmpeg, given the same payloads with its defences off, opens the canary, and the
watch sees it.

How "no outbound request" is observed: the payloads reference a TCP listener on
127.0.0.1 that records every connection it accepts. The ``169.254.169.254``
variants are the same payloads with only the host changed, so they take the same
code path, which the listener shows makes no connection. Positive control: plain
FFmpeg given the playlist connects to the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import resource
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import av.error
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.mediafiles import make_mp4, make_webm
from tests.tasks.support import fast_config, wait_for_video
from tests.uploads.conftest import (
    Caller,
    chunked,
    form,
    pending_multipart,
    put,
    row_counts,
    stored_keys,
)
from vidlib.db.base import utcnow
from vidlib.storage.base import ObjectStore
from vidlib.tasks.models import VideoIngest
from vidlib.tasks.repository import IngestRepository
from vidlib.tasks.runtime import Background
from vidlib.uploads.models import Upload

STREAM = "/api/v1/upload/video"
DIRECT = "/api/v1/upload/video/direct"
METADATA_HOST = "169.254.169.254"
NOT_SUPPORTED = "The file is not a supported video; send MP4, MOV, M4V, WebM or MKV."
NOT_READABLE = "The file is not a readable video."
UNDECODABLE = "The video's frames could not be decoded."
TOO_LARGE = "The video's resolution 100000x100000 exceeds the limit."
# Longer than a retry's backoff and several sweeps take with the fast configuration.
SETTLE_SECONDS = 1.0
# A hostile file is refused in milliseconds; this only absorbs a loaded machine.
QUICK_SECONDS = 10.0
# Peak RSS growth allowed while the hostile files are analysed in this process; one
# 100000x100000 frame would need about 15 GB.
MAX_RSS_GROWTH = 256 * 1024 * 1024

# -- payloads -----------------------------------------------------------------------------

FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
# An EBML header with DocType "webm": upload sniffing takes it for a WebM.
WEBM_HEAD = b"\x1a\x45\xdf\xa3\x8f\x42\x86\x81\x01\x42\x82\x84webm\x42\x87\x81\x02"


def hls_playlist(*segments: str) -> bytes:
    """An HLS playlist with one segment per URL or path."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1"]
    for segment in segments:
        lines += ["#EXTINF:1.0,", segment]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


def ffconcat_script(*targets: str) -> bytes:
    """An ffconcat script listing ``targets``."""
    return ("ffconcat version 1.0\n" + "".join(f"file '{t}'\n" for t in targets)).encode()


def _riff_chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _riff_list(kind: bytes, *items: bytes) -> bytes:
    return _riff_chunk(b"LIST", kind + b"".join(items))


def gab2_avi(subtitle: bytes) -> bytes:
    """An AVI with one text stream whose only packet is a GAB2 subtitle file.

    FFmpeg's AVI demuxer probes a GAB2 payload and opens it with a nested demuxer
    (current versions only as SRT or ASS): the shape of the known AVI + HLS exploit,
    here carrying ``subtitle``.
    """
    avih = struct.pack("<14I", 40000, 0, 0, 0x10, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0)
    strh = struct.pack(
        "<4s4sIHHIIIIIIIIhhhh",
        *(b"txts", b"\0\0\0\0", 0, 0, 0, 0, 1, 25, 0, 1, 0, 0xFFFFFFFF, 0, 0, 0, 0, 0),
    )
    name = "sub.srt\0".encode("utf-16-le")
    payload = (
        b"GAB2\0"
        + struct.pack("<HI", 2, len(name))
        + name
        + struct.pack("<HI", 4, len(subtitle))
        + subtitle
    )
    header = _riff_list(
        b"hdrl",
        _riff_chunk(b"avih", avih),
        _riff_list(b"strl", _riff_chunk(b"strh", strh), _riff_chunk(b"strf", b"")),
    )
    movi = _riff_list(b"movi", _riff_chunk(b"00tx", payload))
    index = _riff_chunk(b"idx1", struct.pack("<4sIII", b"00tx", 0x10, 4, len(payload)))
    body = b"AVI " + header + movi + index
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size < 8:
            raise ValueError("unexpected box size")
        yield kind, at, size
        at += size


def _alias_record(target: str) -> bytes:
    """A Mac alias ``dref`` entry whose absolute path is ``target`` (as FFmpeg's MOV
    demuxer reads it: fixed fields, then tagged records, type 2 being the path)."""
    name = Path(target).name.encode()[:63]
    path = target.encode()
    body = (
        bytes(10)
        + bytes(28)  # volume name: length 0
        + bytes(12)
        + bytes([len(name)])
        + name.ljust(63, b"\0")
        + bytes(16)
        + struct.pack(">hh", -1, -1)  # no relative levels: the absolute path is used
        + bytes(16)
        + struct.pack(">HH", 2, len(path))
        + path.ljust(len(path) + len(path) % 2, b"\0")
        + struct.pack(">hH", -1, 0)
    )
    return struct.pack(">I4sI", 12 + len(body), b"alis", 0) + body


def with_alias_dref(source: Path, target: Path, referenced: str) -> Path:
    """Copy an MP4 whose ``moov`` is at the end, its first track's data reference
    replaced by an alias record pointing at ``referenced`` (a local path).

    The ``moov`` comes after the media data, so growing it moves no sample offset.
    """
    data = bytearray(source.read_bytes())
    parents: list[int] = []
    start, end = 0, len(data)
    for name in (b"moov", b"trak", b"mdia", b"minf", b"dinf", b"dref"):
        _, at, size = next(box for box in _boxes(data, start, end) if box[0] == name)
        parents.append(at)
        start, end = at + 8, at + size
    dref_at = parents.pop()
    (old_size,) = struct.unpack(">I", data[dref_at : dref_at + 4])
    entry = _alias_record(referenced)
    dref = struct.pack(">I4sII", 16 + len(entry), b"dref", 0, 1) + entry
    data[dref_at : dref_at + old_size] = dref
    for at in parents:
        (size,) = struct.unpack(">I", data[at : at + 4])
        data[at : at + 4] = struct.pack(">I", size + len(dref) - old_size)
    target.write_bytes(bytes(data))
    return target


def claiming_resolution(source: Path, target: Path, width: int, height: int) -> Path:
    """Remux a WebM's video packets under a header that claims ``width`` x ``height``.

    The file stays a few KB; only the container's PixelWidth and PixelHeight lie.
    """
    with av.open(str(source)) as src, av.open(str(target), "w", format="webm") as out:
        video = src.streams.video[0]
        stream: Any = out.add_stream_from_template(video)
        stream.width, stream.height = width, height
        for packet in src.demux(video):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return target


# -- observers -----------------------------------------------------------------------------

_IN_ACCESS = 0x001
_IN_OPEN = 0x020
_EVENT = struct.Struct("iIII")


class OpenWatch:
    """Every open and read of anything in one directory, from any thread or process.

    Linux inotify (``IN_OPEN | IN_ACCESS``): the kernel queues an event for each
    open or read of a file in the watched directory, by whatever process, whatever
    the flags, so even an open that is closed again at once is recorded.
    """

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        watch = int(libc.inotify_add_watch(self._fd, bytes(directory), _IN_OPEN | _IN_ACCESS))
        if watch < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch failed on {directory}")
        self.events: list[tuple[str, str]] = []

    def poll(self) -> list[tuple[str, str]]:
        """All events so far, as (``open`` or ``read``, file name)."""
        while True:
            try:
                buffer = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return list(self.events)
            at = 0
            while at < len(buffer):
                _, mask, _, length = _EVENT.unpack_from(buffer, at)
                name = buffer[at + _EVENT.size : at + _EVENT.size + length].rstrip(b"\0")
                kind = "open" if mask & _IN_OPEN else "read"
                self.events.append((kind, name.decode(errors="replace")))
                at += _EVENT.size + length

    def clear(self) -> None:
        """Forget the events so far."""
        self.poll()
        self.events.clear()

    def close(self) -> None:
        """Stop watching."""
        os.close(self._fd)


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 recording what every connection sent first."""

    sock: socket.socket
    received: list[bytes] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        """The listening port."""
        port: int = self.sock.getsockname()[1]
        return port

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """An http URL on this listener (or, with ``host``, the same URL elsewhere)."""
        port = f":{self.port}" if host == "127.0.0.1" else ""
        return f"http://{host}{port}/{path.lstrip('/')}"

    def serve(self) -> None:
        """Accept until stopped: record the first bytes, then hang up."""
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                try:
                    self.received.append(conn.recv(4096))
                except OSError:
                    self.received.append(b"")


@dataclass(frozen=True)
class ClientFile:
    """A file as a client uploads it: its bytes, name and claimed type."""

    data: bytes
    filename: str
    content_type: str = "video/mp4"
    # For files upload sniffing accepts: the reason ingest must give.
    reason: str | None = None


@dataclass
class Arsenal:
    """The hostile files, what they reference, and a valid video for comparison."""

    canary: Path
    listener: Listener
    refused: dict[str, ClientFile]
    accepted: dict[str, ClientFile]
    valid: bytes
    live_hls: Path
    live_concat: Path
    live_dref: Path


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    """A listener on a free port of 127.0.0.1, serving in a thread."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        serving = Listener(sock)
        thread = threading.Thread(target=serving.serve, name="hostile-listener", daemon=True)
        thread.start()
        try:
            yield serving
        finally:
            serving.stop.set()
            thread.join(5)


@pytest.fixture(scope="module")
def arsenal(tmp_path_factory: pytest.TempPathFactory, listener: Listener) -> Arsenal:
    """Every hostile file, built once; they reference a canary and the listener."""
    if not sys.platform.startswith("linux"):
        pytest.skip("observing file opens needs Linux inotify")
    work = tmp_path_factory.mktemp("hostile")
    # Alone in its directory: any event on that directory is a violation.
    canary = make_mp4(tmp_path_factory.mktemp("canary") / "canary.mp4", seconds=0.4, audio=False)
    segment = "latest/meta-data/iam/security-credentials/role.ts"
    local_refs = (f"file://{canary}", str(canary), listener.url(segment))
    metadata_refs = (f"file://{canary}", listener.url(segment, host=METADATA_HOST))
    hls = hls_playlist(*local_refs)
    hls_metadata = hls_playlist(*metadata_refs)
    concat = ffconcat_script(f"file:{canary}", str(canary), listener.url("clip.mp4"))
    concat_metadata = ffconcat_script(listener.url("clip.mp4", host=METADATA_HOST))
    avi = gab2_avi(hls)
    avi_metadata = gab2_avi(hls_metadata)
    refused = {
        "hls": ClientFile(hls, "playlist.m3u8"),
        "hls-metadata": ClientFile(hls_metadata, "clip.mp4"),
        "ffconcat": ClientFile(concat, "list.ffconcat"),
        "ffconcat-metadata": ClientFile(concat_metadata, "clip.mp4"),
        "avi-gab2-hls": ClientFile(avi, "clip.avi"),
        "avi-gab2-hls-metadata": ClientFile(avi_metadata, "clip.mp4"),
    }

    webm = make_webm(work / "small.webm", seconds=0.4, audio=False, height=256)
    huge = claiming_resolution(webm, work / "huge.webm", 100_000, 100_000)
    plain = make_mp4(work / "plain.mp4", seconds=0.4, audio=False, faststart=False)
    dref = with_alias_dref(plain, work / "dref.mp4", str(canary))
    garbage = FTYP + random.Random(1).randbytes(20_000)
    accepted = {
        "header-100000x100000": ClientFile(huge.read_bytes(), "huge.webm", "video/webm", TOO_LARGE),
        "ftyp-garbage": ClientFile(garbage, "garbage.mp4", reason=NOT_READABLE),
        "ftyp-hls": ClientFile(FTYP + hls, "playlist.m3u8", reason=NOT_READABLE),
        "ftyp-hls-metadata": ClientFile(FTYP + hls_metadata, "clip.mp4", reason=NOT_READABLE),
        "ftyp-ffconcat": ClientFile(FTYP + concat, "list.ffconcat", reason=NOT_READABLE),
        "ftyp-avi-gab2-hls": ClientFile(FTYP + avi, "clip.avi", reason=NOT_READABLE),
        "webm-head-hls": ClientFile(WEBM_HEAD + hls, "clip.webm", "video/webm", NOT_READABLE),
        "mov-dref-to-canary": ClientFile(dref.read_bytes(), "clip.mov", reason=UNDECODABLE),
    }
    live_hls = work / "live.m3u8"
    live_hls.write_bytes(hls)
    live_concat = work / "live.ffconcat"
    live_concat.write_bytes(concat)
    return Arsenal(
        canary=canary,
        listener=listener,
        refused=refused,
        accepted=accepted,
        valid=make_mp4(work / "valid.mp4", seconds=1.0).read_bytes(),
        live_hls=live_hls,
        live_concat=live_concat,
        live_dref=dref,
    )


@pytest.fixture
def watch(arsenal: Arsenal) -> Iterator[OpenWatch]:
    """Opens and reads of the canary during one test; the listener's log emptied."""
    arsenal.listener.received.clear()
    watcher = OpenWatch(arsenal.canary.parent)
    try:
        yield watcher
    finally:
        watcher.close()


# -- the app --------------------------------------------------------------------------------


async def stream_upload(
    client: httpx.AsyncClient, caller: Caller, file: ClientFile
) -> httpx.Response:
    """``POST /api/v1/upload/video`` with a streamed multipart body, as a client sends it."""
    body, headers = form(file.data, file.filename)
    return await client.post(
        STREAM, content=chunked(body, 4096), headers={**caller.headers, **headers}
    )


async def direct_upload(
    client: httpx.AsyncClient, caller: Caller, file: ClientFile
) -> tuple[str, httpx.Response]:
    """A direct upload: open the session (with the client's claimed type), PUT the
    bytes to the presigned URL, then ``/complete``; (upload id, the completion)."""
    created = await client.post(
        DIRECT,
        json={
            "filename": file.filename,
            "content_type": file.content_type,
            "file_size": len(file.data),
        },
        headers=caller.headers,
    )
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["method"] == "PUT"
    sent = await put(client, session["url"], file.data, session["headers"])
    assert sent.status_code == 200, sent.text
    upload_id: str = session["upload_id"]
    done = await client.post(f"{DIRECT}/{upload_id}/complete", headers=caller.headers)
    return upload_id, done


def assert_untouched(watch: OpenWatch, arsenal: Arsenal) -> None:
    """Nothing opened or read the canary; nothing connected to the listener."""
    assert watch.poll() == [], "a referenced local file was opened"
    assert arsenal.listener.received == [], "a referenced URL was requested"


def _plain_open(path: Path, options: dict[str, str]) -> None:
    """Open and demux ``path`` with plain PyAV: FFmpeg's defaults plus ``options``."""
    with contextlib.suppress(av.error.FFmpegError), av.open(str(path), options=options) as c:
        for _ in c.demux():
            pass


def assert_payload_is_live(arsenal: Arsenal, watch: OpenWatch, path: Path, **options: str) -> None:
    """Positive control: plain FFmpeg, defences off, follows ``path``'s reference to the
    canary, and the watch sees it (so an empty watch means what it says)."""
    watch.clear()
    _plain_open(path, options)
    assert ("open", arsenal.canary.name) in watch.poll()
    watch.clear()


# -- the tests ------------------------------------------------------------------------------


async def test_references_are_refused_at_upload_and_leave_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    caller: Caller,
    arsenal: Arsenal,
    watch: OpenWatch,
) -> None:
    store: ObjectStore = app.state.store
    for name, file in arsenal.refused.items():
        streamed = await stream_upload(client, caller, file)
        assert streamed.status_code == 415, (name, streamed.text)
        assert streamed.json() == {"detail": NOT_SUPPORTED}, name

        # The client's claimed type does not matter: storage's bytes are sniffed.
        upload_id, completed = await direct_upload(client, caller, file)
        assert completed.status_code == 415, (name, completed.text)
        assert completed.json() == {"detail": NOT_SUPPORTED}, name
        state = await client.get(f"{DIRECT}/{upload_id}", headers=caller.headers)
        assert (state.json()["status"], state.json()["video_id"]) == ("aborted", None), name

    # Nothing kept: no video, no object, no multipart upload; the direct sessions are
    # closed (aborted), and no streamed upload was recorded.
    counts = await row_counts(app)
    assert counts["videos"] == 0, counts
    assert await stored_keys(store) == []
    assert await pending_multipart(store) == []
    async with app.state.sessionmaker() as session:
        uploads = (await session.scalars(select(Upload))).all()
    assert len(uploads) == len(arsenal.refused)
    assert {(u.method, u.status, u.video_id) for u in uploads} == {("put", "aborted", None)}
    assert_untouched(watch, arsenal)

    # The payloads are live: plain FFmpeg follows them to the canary and the listener.
    assert_payload_is_live(arsenal, watch, arsenal.live_hls, protocol_whitelist="file,http,tcp")
    assert arsenal.listener.received, "plain FFmpeg should have requested the segment URL"
    assert arsenal.listener.received[0].startswith(b"GET /latest/meta-data/")
    assert_payload_is_live(
        arsenal, watch, arsenal.live_concat, safe="0", protocol_whitelist="file,http,tcp"
    )


async def _ingest_row(app: FastAPI, video_id: str) -> VideoIngest:
    """The video's ingest bookkeeping: attempts, claim and retry time."""
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with maker() as session:
        row = await session.get(VideoIngest, uuid.UUID(video_id))
    assert row is not None
    return row


async def test_accepted_hostile_files_fail_once_with_a_reason(
    app: FastAPI,
    client: httpx.AsyncClient,
    caller: Caller,
    arsenal: Arsenal,
    watch: OpenWatch,
) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.monotonic()
    videos: dict[str, str] = {}
    for name, file in arsenal.accepted.items():
        streamed = await stream_upload(client, caller, file)
        assert streamed.status_code == 201, (name, streamed.text)
        assert streamed.json()["deduplicated"] is False
        videos[f"{name} (streamed)"] = streamed.json()["video"]["id"]
        _, completed = await direct_upload(client, caller, file)
        assert completed.status_code == 201, (name, completed.text)
        videos[f"{name} (direct)"] = completed.json()["video"]["id"]

    expected = {
        f"{name} ({path})": file.reason
        for name, file in arsenal.accepted.items()
        for path in ("streamed", "direct")
    }
    settled: dict[str, dict[str, Any]] = {}
    for label, video_id in videos.items():
        settled[label] = await wait_for_video(client, caller, video_id, within=QUICK_SECONDS)
    elapsed = time.monotonic() - started
    for label, video in settled.items():
        assert video["status"] == "failed", (label, video)
        assert video["metadata"] == {"error": expected[label]}, label
        assert (video["duration"], video["thumbnail_url"]) == (None, None), label
    # Refused from the header, before any frame: quick, and without the memory a
    # 100000x100000 frame would take (analysis runs in this process's threads).
    assert elapsed < QUICK_SECONDS * 2
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert rss_growth < MAX_RSS_GROWTH, f"peak RSS grew by {rss_growth / 2**20:.0f} MiB"

    # No crash loop: one attempt each, no claim or retry pending; still so after
    # longer than a retry or several sweeps would take.
    rows = {label: await _ingest_row(app, video_id) for label, video_id in videos.items()}
    for label, row in rows.items():
        assert (row.attempts, row.lease_expires_at, row.next_attempt_at) == (1, None, None), label
        assert row.last_error == expected[label], label
    await asyncio.sleep(SETTLE_SECONDS)
    for label, video_id in videos.items():
        row = await _ingest_row(app, video_id)
        assert (row.attempts, row.lease_expires_at, row.next_attempt_at) == (1, None, None), label
        resp = await client.get(f"/api/v1/videos/s3-videos/{video_id}", headers=caller.headers)
        again = resp.json()
        # Presigned URLs are signed afresh on each read; everything else is unchanged.
        assert again == {**settled[label], "s3_url": again["s3_url"]}, label
    # Nor would the sweeper ever queue them again, however late it looks.
    later = utcnow() + timedelta(days=1)
    async with app.state.sessionmaker() as session:
        due = await IngestRepository(session).due(now=later, queued_before=later, limit=1000)
    assert not {str(v) for v in due} & set(videos.values())

    assert_untouched(watch, arsenal)

    # The server is healthy and ingest still works.
    assert (await client.get("/readyz")).status_code == 200
    valid = ClientFile(arsenal.valid, "holiday.mp4")
    ok = await stream_upload(client, caller, valid)
    assert ok.status_code == 201, ok.text
    ready = await wait_for_video(client, caller, ok.json()["video"]["id"], within=QUICK_SECONDS)
    assert ready["status"] == "ready", ready
    assert ready["metadata"]["resolution"] == "320x240"
    # Failed videos have no thumbnail: the valid video's is the only one stored.
    thumbnails = await stored_keys(app.state.store, f"uploads/users/{caller.id}/thumbnails/")
    assert len(thumbnails) == 1, thumbnails
    assert_untouched(watch, arsenal)

    # The QuickTime payload is live: plain FFmpeg with drefs enabled opens the canary.
    assert_payload_is_live(
        arsenal, watch, arsenal.live_dref, enable_drefs="1", use_absolute_path="1"
    )


@pytest.mark.parametrize("db_backend", ["sqlite"])
@pytest.mark.parametrize("storage_backend", ["local"])
@pytest.mark.parametrize(
    "config", [fast_config(media_executor="process", media_workers=1)], ids=["processes"]
)
async def test_memory_capped_analysis_processes_fail_them_the_same_way(
    app: FastAPI,
    client: httpx.AsyncClient,
    caller: Caller,
    background: Background,
    arsenal: Arsenal,
    watch: OpenWatch,
) -> None:
    assert background.context is not None
    assert background.context.media.kind == "process"
    # As in production: analysis in a pool of processes under an address-space cap.
    # A file that made FFmpeg allocate past the cap would kill the process and be
    # retried ("could not be processed", several attempts); these fail on the first.
    names = ("header-100000x100000", "mov-dref-to-canary", "ftyp-garbage")
    videos: dict[str, str] = {}
    for name in names:
        resp = await stream_upload(client, caller, arsenal.accepted[name])
        assert resp.status_code == 201, (name, resp.text)
        videos[name] = resp.json()["video"]["id"]
    for name, video_id in videos.items():
        video = await wait_for_video(client, caller, video_id, within=30)
        assert video["status"] == "failed", (name, video)
        assert video["metadata"] == {"error": arsenal.accepted[name].reason}, name
        row = await _ingest_row(app, video_id)
        assert (row.attempts, row.lease_expires_at, row.next_attempt_at) == (1, None, None), name
    assert_untouched(watch, arsenal)
    ok = await stream_upload(client, caller, ClientFile(arsenal.valid, "holiday.mp4"))
    assert ok.status_code == 201, ok.text
    ready = await wait_for_video(client, caller, ok.json()["video"]["id"], within=30)
    assert ready["status"] == "ready", ready
