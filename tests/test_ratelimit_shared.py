"""Rate-limit counters shared through Redis by several API processes."""

from __future__ import annotations

import pytest
from asgi_lifespan import LifespanManager

from tests.helpers import PASSWORD
from tests.test_ratelimit import _client
from vidlib.app import create_app
from vidlib.config import Settings


@pytest.fixture(params=["local"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Storage plays no part in rate limiting."""
    return str(request.param)


@pytest.fixture(params=["postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Shared counters need Redis, which the PostgreSQL configuration uses."""
    return str(request.param)


async def test_limits_are_shared_between_instances(settings: Settings) -> None:
    assert settings.redis_url
    tight = settings.model_copy(update={"rate_limit_auth": "4/minute"})
    one, two = create_app(tight), create_app(tight)
    async with LifespanManager(one), LifespanManager(two), _client(one) as c1, _client(two) as c2:
        body = {"email": "nobody@example.com", "password": PASSWORD}
        for c in (c1, c2, c1, c2):
            assert (await c.post("/api/v1/auth/login", json=body)).status_code == 401
        assert (await c1.post("/api/v1/auth/login", json=body)).status_code == 429
        assert (await c2.post("/api/v1/auth/login", json=body)).status_code == 429


async def test_redis_down_fails_open(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "rate_limit_auth": "1/minute"}
    )
    app = create_app(broken)
    async with LifespanManager(app), _client(app) as client:
        body = {"email": "nobody@example.com", "password": PASSWORD}
        for _ in range(3):
            assert (await client.post("/api/v1/auth/login", json=body)).status_code == 401
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "cache" in ready.json()["detail"]
