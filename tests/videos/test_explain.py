"""On PostgreSQL, the list, cursor and search queries are served by indexes at scale.

A user with 100,000 videos (plus other users' rows) is seeded with set-based SQL;
each query the API really issues is captured and re-run under EXPLAIN.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from tests.helpers import auth_headers

LIST = "/api/v1/videos/s3-videos"
SEED_SQL = """
INSERT INTO videos (id, filename, original_filename, s3_key, s3_url, s3_bucket, content_type,
                    file_size, duration, metadata, user_id, sha256, status, created_at, updated_at)
SELECT gen_random_uuid(),
       (ARRAY['beach','party','drone','sunset','wedding','garden','museum','snow','puppy',
              'concert','market','hiking','soccer','skate','lecture','kitchen','rooftop',
              'family','tutorial','birthday'])[1 + (g % 20)] || '_' || g || '.mp4',
       'IMG_' || g || '.MOV',
       'uploads/users/' || CAST(:uid AS text) || '/videos/' || g || '_v.mp4',
       's3://b/' || g, 'b', 'video/mp4',
       (g * 7919) % 1000000000, CASE WHEN g % 10 = 0 THEN NULL ELSE (g % 900) + 0.5 END,
       '{"codec": "h264"}', CAST(:uid AS uuid), NULL, 'ready',
       now() - make_interval(secs => g), now()
FROM generate_series(CAST(:start AS int), CAST(:stop AS int)) AS g
"""


@pytest.fixture(params=["postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """EXPLAIN checks are about PostgreSQL's planner."""
    return str(request.param)


class Captured:
    """The SQL statements the app sent, with their parameters."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    def videos_selects(self) -> list[tuple[str, Any]]:
        return [
            (s, p)
            for s, p in self.statements
            if s.lstrip().upper().startswith("SELECT") and "FROM videos" in s
        ]


@pytest.fixture
def captured(app: FastAPI) -> Iterator[Captured]:
    cap = Captured()
    engine = app.state.engine.sync_engine

    def _listen(
        _c: Connection, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool
    ) -> None:
        cap.statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", _listen)
    yield cap
    event.remove(engine, "before_cursor_execute", _listen)


async def _seed(app: FastAPI, user_id: str, other_id: str) -> None:
    async with app.state.engine.begin() as conn:
        await conn.execute(text(SEED_SQL), {"uid": user_id, "start": 1, "stop": 100_000})
        await conn.execute(text(SEED_SQL), {"uid": other_id, "start": 100_001, "stop": 130_000})
        await conn.execute(
            text(
                "UPDATE users SET video_count = (SELECT count(*) FROM videos v "
                "WHERE v.user_id = users.id AND v.deleted_at IS NULL)"
            )
        )
        await conn.execute(text("ANALYZE videos"))
        await conn.execute(text("ANALYZE users"))


async def _plan(app: FastAPI, statement: str, params: Any) -> str:
    async with app.state.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        # asyncpg numbered parameters: re-run the exact statement under EXPLAIN.
        rows = await driver.fetch("EXPLAIN " + statement, *params)
    return "\n".join(r[0] for r in rows)


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("page 1", {}),
    ("page 1 by filename", {"sort_by": "filename", "sort_order": "asc"}),
    ("page 1 by original filename", {"sort_by": "original_filename"}),
    ("page 1 by duration", {"sort_by": "duration"}),
    ("page 1 by size", {"sort_by": "file_size", "sort_order": "asc"}),
    ("deep page", {"page": 500}),
    ("search 5%", {"search": "sunset"}),
    ("search none", {"search": "zzqxv"}),
]


async def test_queries_use_indexes(
    app: FastAPI, client: httpx.AsyncClient, captured: Captured
) -> None:
    headers = await auth_headers(client)
    uid = (await client.get("/api/v1/users/me", headers=headers)).json()["id"]
    other = str(
        uuid.UUID(
            (await client.get("/api/v1/users/me", headers=await auth_headers(client))).json()["id"]
        )
    )
    await _seed(app, uid, other)
    for name, query in QUERIES:
        captured.statements.clear()
        first = await client.get(LIST, params={"page_size": 20, **query}, headers=headers)
        assert first.status_code == 200, first.text
        checks = list(captured.videos_selects())
        cursor = first.json()["next_cursor"]
        if cursor and "page" not in query:
            captured.statements.clear()
            nxt = await client.get(
                LIST, params={"page_size": 20, **query, "cursor": cursor}, headers=headers
            )
            assert nxt.status_code == 200
            checks += captured.videos_selects()
        assert checks, f"{name}: no query on videos was captured"
        for statement, params in checks:
            plan = await _plan(app, statement, params)
            assert "Seq Scan on videos" not in plan, f"{name}:\n{statement}\n{plan}"
            assert "Index" in plan, f"{name}:\n{plan}"
