"""Library tests run on both databases; storage only matters for URLs (see test_urls)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import seed_videos
from tests.helpers import auth_headers
from vidlib.videos.models import Video


@pytest.fixture(params=["local"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """The library's queries do not depend on the store; the local one is enough here."""
    return str(request.param)


Seeder = Callable[..., Awaitable[list[Video]]]


@pytest.fixture
def seed(app: FastAPI) -> Seeder:
    """Insert videos for the user behind ``headers``."""

    async def _seed(user_id: str, count: int, **overrides: Any) -> list[Video]:
        return await seed_videos(app.state.sessionmaker, uuid.UUID(user_id), count, **overrides)

    return _seed


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """The id of the user behind ``headers``."""
    resp = await client.get("/api/v1/users/me", headers=headers)
    return str(resp.json()["id"])


@pytest.fixture
async def user(client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """A registered user: (headers, id)."""
    headers = await auth_headers(client)
    return headers, await me(client, headers)
