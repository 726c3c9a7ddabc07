"""The recent list stays fresh to its owner across API instances sharing one cache.

Each instance keeps its callers' account rows (and so their library version) in
memory and hears of a change from PostgreSQL at commit. In separate processes that
notification is on its way before the writer's response is; two instances in one
event loop, as here, are made to wait for it explicitly so the test is not a race.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from tests.factories import seed_videos
from tests.helpers import auth_headers
from vidlib.app import create_app
from vidlib.auth.accounts import AccountCache
from vidlib.config import Settings

LIST = "/api/v1/videos/s3-videos"


@pytest.fixture(params=["postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Two instances share PostgreSQL and Redis, as in production."""
    return str(request.param)


async def _heard(app: FastAPI, user_id: str) -> None:
    """Wait (up to 5 s) until ``app`` has dropped the user's snapshot after a change."""
    accounts: AccountCache = app.state.accounts
    deadline = time.monotonic() + 5
    while accounts.get(uuid.UUID(user_id)) is not None:
        if time.monotonic() > deadline:
            raise AssertionError("the change was not heard within 5 s")
        await asyncio.sleep(0.005)


async def test_recent_fresh_across_two_instances(settings: Settings) -> None:
    assert settings.redis_url
    one, two = create_app(settings), create_app(settings)
    async with LifespanManager(one), LifespanManager(two):
        c1 = httpx.AsyncClient(transport=httpx.ASGITransport(app=one), base_url="http://a")
        c2 = httpx.AsyncClient(transport=httpx.ASGITransport(app=two), base_url="http://b")
        async with c1, c2:
            headers = await auth_headers(c1)
            uid = (await c1.get("/api/v1/users/me", headers=headers)).json()["id"]
            videos = await seed_videos(one.state.sessionmaker, uuid.UUID(uid), 3)
            newest = max(videos, key=lambda v: v.created_at)
            # Both instances fill the shared cache.
            for c in (c1, c2):
                first = (await c.get(f"{LIST}/recent", headers=headers)).json()["videos"]
                assert first[0]["id"] == str(newest.id)
            keys = [k async for k in one.state.cache._redis.scan_iter("vidlib:cache:recent:*")]
            assert keys, "the recent list was not cached in Redis"
            # A delete through instance two is visible at once through instance one.
            assert (await c2.delete(f"{LIST}/{newest.id}", headers=headers)).status_code == 204
            await _heard(one, uid)
            after = (await c1.get(f"{LIST}/recent", headers=headers)).json()["videos"]
            assert str(newest.id) not in [v["id"] for v in after]
            # A rename through one is visible through two; a restore through one too.
            second = after[0]["id"]
            await c1.patch(f"{LIST}/{second}", headers=headers, json={"filename": "new.mp4"})
            await _heard(two, uid)
            got = (await c2.get(f"{LIST}/recent", headers=headers)).json()["videos"]
            assert got[0]["filename"] == "new.mp4"
            await c1.post(f"{LIST}/{newest.id}/restore", headers=headers)
            await _heard(two, uid)
            got = (await c2.get(f"{LIST}/recent", headers=headers)).json()["videos"]
            assert got[0]["id"] == str(newest.id)
            # An upload (a new row through the repository) shows at once too.
            fresh = await seed_videos(one.state.sessionmaker, uuid.UUID(uid), 1, start=999)
            await _heard(two, uid)
            got = (await c2.get(f"{LIST}/recent", headers=headers)).json()["videos"]
            assert got[0]["id"] == str(fresh[0].id)
