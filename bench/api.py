"""Drive the library API over HTTP at a fixed concurrency and print a table.

    python -m bench.api --seconds 15 --connections 16

Needs a PostgreSQL database seeded by ``python -m bench.seed`` in
``VIDLIB_DATABASE_URL``. Starts ``vidlib serve`` (one process) against it with S3
storage configured (URLs are presigned locally; no storage request is made).
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from bench.common import command_line, machine, markdown_table, server, wrk

LIST = "/api/v1/videos/s3-videos"


def login(base: str, email: str) -> str:
    """An access token for a bench user."""
    resp = httpx.post(
        f"{base}/api/v1/auth/login", json={"email": email, "password": "bench-password"}, timeout=30
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def run(database_url: str, seconds: int, connections: int) -> str:
    """Benchmark every row; returns the markdown report."""
    env = {
        "VIDLIB_DATABASE_URL": database_url,
        "VIDLIB_STORAGE_BACKEND": "s3",
        "VIDLIB_S3_BUCKET": "bench",
        "VIDLIB_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "VIDLIB_JWT_SECRET": "bench-secret-" + "b" * 40,
        "VIDLIB_ACCESS_TOKEN_TTL_SECONDS": "7200",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "VIDLIB_DATA_DIR": os.path.join(os.getcwd(), "bench", ".data"),
        # The load generator is one client hammering one user: limits off the measurement.
        "VIDLIB_RATE_LIMIT_PER_USER": "100000000/minute",
        "VIDLIB_RATE_LIMIT_PER_IP": "100000000/minute",
        "VIDLIB_RATE_LIMIT_AUTH": "100000/minute",
    }
    with server(env) as (base, _pid):
        heavy = {"Authorization": f"Bearer {login(base, 'heavy@bench.local')}"}
        normal = {"Authorization": f"Bearer {login(base, 'user1@bench.local')}"}
        first = httpx.get(f"{base}{LIST}", headers=heavy, timeout=30).json()
        key = first["videos"][0]["s3_key"]
        before = httpx.get(f"{base}{LIST}", params={"page": 9999}, headers=heavy, timeout=60).json()
        cursor = before["next_cursor"]
        rows: list[tuple[str, str, dict[str, str]]] = [
            ("/healthz (ceiling)", "/healthz", {}),
            ("list page 1, heavy user (200k)", LIST, heavy),
            ("list page 1, normal user (~800)", LIST, normal),
            ("list page 10,000 via page", f"{LIST}?page=10000", heavy),
            ("list page 10,000 via cursor", f"{LIST}?cursor={cursor}", heavy),
            ("search ~5% (heavy user)", f"{LIST}?search=sunset", heavy),
            ("search matching none (heavy user)", f"{LIST}?search=zzqxv", heavy),
            ("recent (limit 5)", f"{LIST}/recent", heavy),
            ("by key", f"{LIST}/by-key/{key}", heavy),
        ]
        results = []
        for name, path, headers in rows:
            # A short warm-up so connection pools and caches are in their steady state.
            wrk(base + path, seconds=2, connections=connections, headers=headers)
            results.append(
                (name, wrk(base + path, seconds=seconds, connections=connections, headers=headers))
            )
    ceiling = results[0][1].rps
    table = markdown_table(
        ["endpoint", "req/s", "p50 ms", "p99 ms", "errors", "of /healthz"],
        [
            [
                name,
                f"{r.rps:,.0f}",
                f"{r.p50_ms:.2f}",
                f"{r.p99_ms:.2f}",
                str(r.errors),
                f"{r.rps / ceiling:.0%}",
            ]
            for name, r in results
        ],
    )
    return (
        f"Machine: {machine()}\n\n"
        f"Command: `{command_line()}` ({connections} connections, {seconds} s per row, "
        f"one server process, load generator wrk on the same machine)\n\n{table}\n"
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database-url", default=os.environ.get("VIDLIB_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("set VIDLIB_DATABASE_URL to a database seeded by bench.seed")
    report = run(args.database_url, args.seconds, args.connections)
    sys.stdout.write(report)


if __name__ == "__main__":
    main()
