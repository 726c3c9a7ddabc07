"""Fill the project's own schema with a large, realistic library, fast (COPY, set-based SQL).

    python -m bench.seed --videos 1000000 --users 1000 --heavy 200000

Runs against ``VIDLIB_DATABASE_URL`` (PostgreSQL, migrated). The heavy user is
``heavy@bench.local``; the others ``user{n}@bench.local``; every password is
``bench-password``. Existing bench users and their videos are replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
from argon2 import PasswordHasher

from vidlib.db.migrate import upgrade

PASSWORD = "bench-password"
# Twenty topic words: a search for one of them matches about 5% of a library.
TOPICS = [
    "beach",
    "birthday",
    "concert",
    "drone",
    "family",
    "garden",
    "hiking",
    "kitchen",
    "lecture",
    "market",
    "museum",
    "party",
    "puppy",
    "rooftop",
    "skate",
    "snow",
    "soccer",
    "sunset",
    "tutorial",
    "wedding",
]
ADJECTIVES = ["morning", "late", "quick", "long", "final", "raw", "best", "first", "new", "old"]
SUFFIXES = ["", "_edit", "_final", "_v2", "_4k", "_clip", "_short", " (1)", " copy"]
CODECS = [("h264", 0.7), ("hevc", 0.2), ("vp9", 0.1)]
RESOLUTIONS = [(1920, 1080), (1280, 720), (3840, 2160), (1080, 1920), (720, 1280)]

# Indexes rebuilt after the load: building once is far cheaper than updating per row.
SECONDARY_INDEXES = [
    "idx_videos_user_id",
    "idx_videos_created_at",
    "idx_videos_filename",
    "idx_videos_s3_key",
    "ix_videos_live_created",
    "ix_videos_live_filename",
    "ix_videos_live_original_filename",
    "ix_videos_live_file_size",
    "ix_videos_live_duration",
    "uq_videos_user_sha256_live",
    "ix_videos_deleted_at",
    "ix_videos_filename_trgm",
    "ix_videos_original_filename_trgm",
]


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _codec(rng: random.Random) -> str:
    roll = rng.random()
    for name, share in CODECS:
        if roll < share:
            return name
        roll -= share
    return CODECS[-1][0]


def video_rows(
    user_id: uuid.UUID, count: int, rng: random.Random, start: datetime
) -> Iterator[tuple[object, ...]]:
    """Rows in the ``videos`` column order used by COPY below."""
    for n in range(count):
        topic = rng.choice(TOPICS)
        adjective = rng.choice(ADJECTIVES)
        number = rng.randint(1, 9999)
        created = start + timedelta(seconds=n * 37 + rng.randint(0, 30))
        ts = int(created.timestamp())
        filename = f"{adjective}_{topic}_{number}{rng.choice(SUFFIXES).replace(' ', '_')}.mp4"
        original = rng.choice(
            [
                f"{topic.title()} {adjective} {number}.mp4",
                f"IMG_{number:04d}_{topic}.MOV",
                f"{topic} {created:%Y-%m-%d}{rng.choice(SUFFIXES)}.mp4",
            ]
        )
        key = f"uploads/users/{user_id}/videos/{ts}_{n}_{filename}"
        width, height = rng.choice(RESOLUTIONS)
        fps = rng.choice([24, 25, 30, 60])
        codec = _codec(rng)
        duration = round(rng.uniform(2, 900), 2)
        metadata = {
            "resolution": f"{width}x{height}",
            "width": width,
            "height": height,
            "fps": fps,
            "codec": codec,
            "bitrate": rng.randint(1_000_000, 40_000_000),
            "audio_codec": "aac",
        }
        yield (
            uuid.uuid4(),
            filename,
            original,
            key,
            f"s3://bench/{key}",
            "bench",
            "video/mp4",
            rng.randint(500_000, 2_000_000_000),
            duration,
            f"uploads/users/{user_id}/thumbnails/{ts}_{n}_thumb.jpg",
            None,
            json.dumps(metadata),
            user_id,
            f"{rng.getrandbits(256):064x}",
            "ready",
            created,
            created,
            None,
        )


COLUMNS = [
    "id",
    "filename",
    "original_filename",
    "s3_key",
    "s3_url",
    "s3_bucket",
    "content_type",
    "file_size",
    "duration",
    "thumbnail_s3_key",
    "thumbnail_url",
    "metadata",
    "user_id",
    "sha256",
    "status",
    "created_at",
    "updated_at",
    "deleted_at",
]


async def seed(url: str, videos: int, users: int, heavy: int, seed_value: int) -> None:
    """Replace the bench users and load their videos."""
    rng = random.Random(seed_value)
    password_hash = PasswordHasher().hash(PASSWORD)
    conn = await asyncpg.connect(_pg_dsn(url))
    # Binary COPY: jsonb's wire format is a version byte followed by the JSON text.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda text: b"\x01" + text.encode(),
        decoder=lambda data: json.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )
    t0 = time.perf_counter()
    try:
        await conn.execute("DELETE FROM users WHERE email LIKE '%@bench.local'")
        now = datetime.now(UTC)
        light = users - 1
        per_light, extra = divmod(videos - heavy, max(light, 1))
        plan: list[tuple[uuid.UUID, str, int]] = [(uuid.uuid4(), "heavy@bench.local", heavy)]
        plan += [
            (uuid.uuid4(), f"user{i}@bench.local", per_light + (1 if i <= extra else 0))
            for i in range(1, light + 1)
        ]
        await conn.copy_records_to_table(
            "users",
            records=[(uid, email, password_hash, count, 0, now, now) for uid, email, count in plan],
            columns=[
                "id",
                "email",
                "password_hash",
                "video_count",
                "library_version",
                "created_at",
                "updated_at",
            ],
        )
        existing = {
            r["indexname"]
            for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'videos'")
        }
        definitions = {
            r["indexname"]: r["indexdef"]
            for r in await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'videos'"
            )
            if r["indexname"] in SECONDARY_INDEXES
        }
        for name in SECONDARY_INDEXES:
            if name in existing:
                await conn.execute(f'DROP INDEX "{name}"')
        t_load = time.perf_counter()
        try:
            start = now - timedelta(days=3 * 365)
            loaded = 0
            for uid, _, count in plan:
                await conn.copy_records_to_table(
                    "videos", records=video_rows(uid, count, rng, start), columns=COLUMNS
                )
                loaded += count
                if loaded % 100_000 < count:
                    print(f"  {loaded:>9,} videos loaded", file=sys.stderr)
        finally:
            # Rebuild the indexes even when the load fails, so the schema stays whole.
            t_index = time.perf_counter()
            await conn.execute("SET maintenance_work_mem = '512MB'")
            await conn.execute("SET max_parallel_maintenance_workers = 2")
            for name in SECONDARY_INDEXES:
                if name in definitions:
                    await conn.execute(definitions[name])
        # VACUUM sets the visibility map, so index-only scans (deep pages) skip the heap.
        await conn.execute("VACUUM ANALYZE users")
        await conn.execute("VACUUM ANALYZE videos")
        t_end = time.perf_counter()
    finally:
        await conn.close()
    print(
        f"seeded {videos:,} videos for {users:,} users "
        f"(heavy user {heavy:,}) in {t_end - t0:.1f} s: "
        f"load {t_index - t_load:.1f} s, indexes {t_end - t_index:.1f} s"
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--heavy", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--database-url", default=os.environ.get("VIDLIB_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url or not args.database_url.startswith("postgresql"):
        parser.error("set VIDLIB_DATABASE_URL (or --database-url) to a PostgreSQL database")
    if args.heavy > args.videos or args.users < 2:
        parser.error("--heavy must not exceed --videos, and --users must be at least 2")
    upgrade(args.database_url)
    asyncio.run(seed(args.database_url, args.videos, args.users, args.heavy, args.seed))


if __name__ == "__main__":
    main()
