"""Soak: a mixed workload at a constant arrival rate (open model) for minutes on end.

    python -m bench.soak --minutes 10 --rate 40

Requests are scheduled on a fixed timetable (``--rate`` per second) whatever the
responses do, and each one's latency is measured from its *scheduled* time, so a
server falling behind shows as queueing rather than as a politely slower client. The
client holds at most ``--connections`` connections; a request waiting for one is
waiting in the queue, and that wait counts.

What it runs against, all on 127.0.0.1 and all started here: SeaweedFS (S3 storage),
a fresh PostgreSQL database ``vidlib_bench_soak_<random>`` on 127.0.0.1:5432 (dropped at
the end) seeded with ``bench.seed`` (``--videos`` across ``--users``, the heavy user
holding ``--heavy``), and one ``vidlib serve`` process. Rate limits and the per-user
upload concurrency limit are raised far above the offered load (the limiters still run)
since every request comes from one address and a handful of users.

The mix: list page 1 and deeper pages (heavy and normal users), search, recent, by-key,
small uploads of unique random bytes, and job creation when the server has
``/api/v1/jobs/create``. Reported: per route, requests, errors, p50, p99 and max
latency; the achieved rate; how late the client itself dispatched (its own health);
the server's RSS at the start, the end, its peak and per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from tests.fixtures.seaweed import S3Server, run_seaweedfs

from bench.common import (
    load_average,
    machine,
    markdown_table,
    percentile,
    random_video_bytes,
    rss_kib,
    scratch_postgres,
    server,
)
from bench.seed import TOPICS

LIST = "/api/v1/videos/s3-videos"
BUCKET = "vidlib-bench-soak"
PASSWORD = "bench-password"
NORMAL_USERS = 5


@dataclass
class RouteStats:
    """Latencies (ms, from the scheduled time) and failures of one route."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        """Requests finished (answered or failed)."""
        return len(self.latencies) + sum(self.errors.values())


@dataclass
class Context:
    """What the request makers need: tokens and ids known to exist."""

    heavy: dict[str, str]
    normal: list[dict[str, str]]
    keys: list[str]
    video_ids: list[str]
    upload_bytes: int
    uploads: int = 0


Maker = Callable[[httpx.AsyncClient, Context, random.Random], Awaitable[httpx.Response]]


async def _list_first(c: httpx.AsyncClient, ctx: Context, rng: random.Random) -> httpx.Response:
    headers = ctx.heavy if rng.random() < 0.6 else rng.choice(ctx.normal)
    return await c.get(LIST, headers=headers)


async def _list_deep(c: httpx.AsyncClient, ctx: Context, rng: random.Random) -> httpx.Response:
    return await c.get(LIST, params={"page": rng.randint(2, 200)}, headers=ctx.heavy)


async def _search(c: httpx.AsyncClient, ctx: Context, rng: random.Random) -> httpx.Response:
    return await c.get(LIST, params={"search": rng.choice(TOPICS)}, headers=ctx.heavy)


async def _recent(c: httpx.AsyncClient, ctx: Context, rng: random.Random) -> httpx.Response:
    headers = ctx.heavy if rng.random() < 0.6 else rng.choice(ctx.normal)
    return await c.get(f"{LIST}/recent", headers=headers)


async def _by_key(c: httpx.AsyncClient, ctx: Context, rng: random.Random) -> httpx.Response:
    return await c.get(f"{LIST}/by-key/{rng.choice(ctx.keys)}", headers=ctx.heavy)


async def _upload(c: httpx.AsyncClient, ctx: Context, rng: random.Random) -> httpx.Response:
    ctx.uploads += 1
    body = random_video_bytes(ctx.upload_bytes)
    files = {"file": (f"soak-{ctx.uploads}.mp4", body, "video/mp4")}
    return await c.post("/api/v1/upload/video", files=files, headers=rng.choice(ctx.normal))


async def _job(c: httpx.AsyncClient, ctx: Context, rng: random.Random) -> httpx.Response:
    body = {
        "s3_video_id": rng.choice(ctx.video_ids),
        "transcript_text": "A soak-test transcript.",
        "title": "soak",
    }
    return await c.post("/api/v1/jobs/create", json=body, headers=ctx.heavy)


# (name, weight, maker, expected statuses)
ROUTES: list[tuple[str, int, Maker, frozenset[int]]] = [
    ("list page 1", 30, _list_first, frozenset({200})),
    ("list page 2-200 (heavy)", 10, _list_deep, frozenset({200})),
    ("search (heavy)", 15, _search, frozenset({200})),
    ("recent", 20, _recent, frozenset({200})),
    ("by key", 5, _by_key, frozenset({200})),
    ("upload", 10, _upload, frozenset({200, 201})),
    ("job create", 5, _job, frozenset({201})),
]


@dataclass
class SoakResult:
    """Everything one soak measured."""

    duration: float
    scheduled: int
    stats: dict[str, RouteStats]
    dispatch_lag_ms: list[float]
    rss_timeline: list[tuple[float, int]]
    rss_start_kib: int
    rss_end_kib: int
    unfinished: int
    jobs_enabled: bool


async def _login(c: httpx.AsyncClient, email: str) -> dict[str, str]:
    resp = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def _context(c: httpx.AsyncClient, upload_bytes: int) -> tuple[Context, bool]:
    heavy = await _login(c, "heavy@bench.local")
    normal = [await _login(c, f"user{n}@bench.local") for n in range(1, NORMAL_USERS + 1)]
    keys: list[str] = []
    ids: list[str] = []
    for page in (1, 2, 3):
        resp = await c.get(LIST, params={"page": page, "page_size": 50}, headers=heavy)
        resp.raise_for_status()
        for video in resp.json()["videos"]:
            keys.append(video["s3_key"])
            ids.append(video["id"])
    paths = (await c.get("/openapi.json")).json().get("paths", {})
    return Context(heavy, normal, keys, ids, upload_bytes), "/api/v1/jobs/create" in paths


async def soak(
    base: str,
    pid: int,
    *,
    seconds: float,
    rate: float,
    connections: int,
    upload_bytes: int,
    request_timeout: float,
    seed: int,
) -> SoakResult:
    """Offer ``rate`` requests per second for ``seconds``; collect latencies from schedule."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    # No pool timeout: waiting for a connection is queueing and is measured as latency.
    client_timeout = httpx.Timeout(request_timeout, pool=None)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=client_timeout) as c:
        ctx, jobs_enabled = await _context(c, upload_bytes)
        routes = [r for r in ROUTES if jobs_enabled or r[0] != "job create"]
        rng = random.Random(seed)
        picks = rng.choices(
            range(len(routes)), weights=[r[1] for r in routes], k=int(seconds * rate)
        )
        stats = {r[0]: RouteStats() for r in routes}
        lag: list[float] = []
        loop = asyncio.get_running_loop()
        in_flight: set[asyncio.Task[None]] = set()
        timeline: list[tuple[float, int]] = []

        async def one(index: int, scheduled: float) -> None:
            name, _, maker, ok = routes[index]
            try:
                resp = await asyncio.wait_for(maker(c, ctx, rng), request_timeout)
            except Exception as exc:
                stats[name].errors[type(exc).__name__] += 1
                return
            if resp.status_code in ok:
                stats[name].latencies.append((loop.time() - scheduled) * 1000)
            else:
                stats[name].errors[str(resp.status_code)] += 1

        async def sample_rss(start: float) -> None:
            while True:
                timeline.append((loop.time() - start, rss_kib(pid)))
                await asyncio.sleep(5)

        rss_start = rss_kib(pid)
        start = loop.time() + 0.5
        sampler = asyncio.create_task(sample_rss(start))
        next_report = start + 60
        for i, index in enumerate(picks):
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            lag.append((now - scheduled) * 1000)
            task = asyncio.create_task(one(index, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            if now >= next_report:
                next_report += 60
                done = sum(s.count for s in stats.values())
                failed = sum(sum(s.errors.values()) for s in stats.values())
                print(
                    f"  {now - start:5.0f} s: {done:,} answered, {failed} errors, "
                    f"{len(in_flight)} in flight, server RSS {rss_kib(pid) / 1024:.0f} MiB",
                    file=sys.stderr,
                )
        # Drain: every request already has its own timeout; this bounds the whole run.
        unfinished = 0
        if in_flight:
            _, pending = await asyncio.wait(set(in_flight), timeout=request_timeout + 5)
            unfinished = len(pending)
            for task in pending:
                task.cancel()
        duration = loop.time() - start
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        rss_end = rss_kib(pid)
        timeline.append((duration, rss_end))
    return SoakResult(
        duration,
        len(picks),
        stats,
        lag,
        timeline,
        rss_start,
        rss_end,
        unfinished,
        jobs_enabled,
    )


def command(args: argparse.Namespace) -> str:
    """The command line for these settings."""
    return (
        f"python -m bench.soak --minutes {args.minutes:g} --rate {args.rate:g} "
        f"--connections {args.connections} --videos {args.videos} --users {args.users} "
        f"--heavy {args.heavy} --upload-kib {args.upload_kib}"
    )


def report(result: SoakResult, args: argparse.Namespace, load_before: str) -> str:
    """The markdown report."""
    rows = []
    for name, s in result.stats.items():
        errors = ", ".join(f"{k}: {v}" for k, v in s.errors.most_common()) or "0"
        rows.append(
            [
                name,
                f"{s.count:,}",
                errors,
                f"{percentile(s.latencies, 50):.1f}",
                f"{percentile(s.latencies, 99):.1f}",
                f"{max(s.latencies, default=0):.1f}",
            ]
        )
    every: list[float] = [x for s in result.stats.values() for x in s.latencies]
    failed = sum(sum(s.errors.values()) for s in result.stats.values())
    rows.append(
        [
            "**all**",
            f"{sum(s.count for s in result.stats.values()):,}",
            str(failed + result.unfinished),
            f"{percentile(every, 50):.1f}",
            f"{percentile(every, 99):.1f}",
            f"{max(every, default=0):.1f}",
        ]
    )
    table = markdown_table(["route", "requests", "errors", "p50 ms", "p99 ms", "max ms"], rows)
    per_minute = [
        f"{rss / 1024:.0f}" for t, rss in result.rss_timeline if t % 60 < 5 or t == result.duration
    ]
    peak = max((rss for _, rss in result.rss_timeline), default=result.rss_end_kib)
    answered = sum(s.count for s in result.stats.values())
    jobs = "" if result.jobs_enabled else " (no /api/v1/jobs/create on this server: no jobs)"
    return (
        f"Machine: {machine()}; load average before: {load_before}, after: {load_average()}\n\n"
        f"Command: `{command(args)}` (PostgreSQL, SeaweedFS S3 storage, one `vidlib serve` "
        f"process; open model, latency from the scheduled time){jobs}\n\n"
        f"Offered {args.rate:g} req/s for {args.minutes:g} min: {result.scheduled:,} scheduled, "
        f"{answered:,} answered in {result.duration:.0f} s "
        f"({answered / max(result.duration, 1e-9):.1f} req/s), "
        f"{result.unfinished} unfinished at the end. Client dispatch lag p99 "
        f"{percentile(result.dispatch_lag_ms, 99):.1f} ms, max "
        f"{max(result.dispatch_lag_ms, default=0):.1f} ms.\n\n"
        f"{table}\n\n"
        f"Server RSS: start {result.rss_start_kib / 1024:.0f} MiB, end "
        f"{result.rss_end_kib / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB; "
        f"by minute (MiB): {', '.join(per_minute)}\n"
    )


async def _create_bucket(s3: S3Server) -> None:
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3",
        region_name=s3.region,
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    ) as client:
        await client.create_bucket(Bucket=BUCKET)


def run(args: argparse.Namespace) -> str:
    """Start everything, soak, tear down; returns the markdown report."""
    from bench.seed import seed
    from vidlib.db.migrate import upgrade

    load_before = load_average()
    with run_seaweedfs() as s3, scratch_postgres("vidlib_bench_soak") as database_url:
        upgrade(database_url)
        with contextlib.redirect_stdout(sys.stderr):
            asyncio.run(seed(database_url, args.videos, args.users, args.heavy, 42))
        asyncio.run(_create_bucket(s3))
        env = {
            "VIDLIB_DATABASE_URL": database_url,
            "VIDLIB_STORAGE_BACKEND": "s3",
            "VIDLIB_S3_BUCKET": BUCKET,
            "VIDLIB_S3_ENDPOINT_URL": s3.endpoint_url,
            "VIDLIB_S3_REGION": s3.region,
            "VIDLIB_S3_ADDRESSING_STYLE": "path",
            "VIDLIB_JWT_SECRET": "bench-secret-" + "s" * 40,
            "VIDLIB_ACCESS_TOKEN_TTL_SECONDS": str(24 * 3600),
            "VIDLIB_RATE_LIMIT_PER_USER": "100000000/minute",
            "VIDLIB_RATE_LIMIT_PER_IP": "100000000/minute",
            "VIDLIB_RATE_LIMIT_AUTH": "100000/minute",
            # The client uploads for a handful of users at a rate no phone would: the
            # per-user upload concurrency limit would turn bunched arrivals into 429s.
            "VIDLIB_UPLOAD_CONCURRENCY_PER_USER": "1000",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
        with server(env) as (base, pid):
            t0 = time.monotonic()
            print(f"soaking at {args.rate:g} req/s for {args.minutes:g} min", file=sys.stderr)
            result = asyncio.run(
                soak(
                    base,
                    pid,
                    seconds=args.minutes * 60,
                    rate=args.rate,
                    connections=args.connections,
                    upload_bytes=args.upload_kib * 1024,
                    request_timeout=args.timeout,
                    seed=args.seed,
                )
            )
            print(f"done in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return report(result, args, load_before)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--heavy", type=int, default=20_000)
    parser.add_argument("--upload-kib", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.connections < 1:
        parser.error("--minutes, --rate and --connections must be positive")
    if args.users <= NORMAL_USERS or args.heavy > args.videos:
        parser.error(f"--users must exceed {NORMAL_USERS} and --heavy must not exceed --videos")
    sys.stdout.write(run(args))


if __name__ == "__main__":
    main()
