"""Rate limits: 429 with Retry-After, per user and per address, shared through Redis."""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.helpers import PASSWORD, auth_headers
from vidlib.app import create_app
from vidlib.config import Settings


@pytest.fixture(params=["local"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Storage plays no part in rate limiting."""
    return str(request.param)


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


async def test_login_is_limited_per_address(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"rate_limit_auth": "5/minute"}))
    async with LifespanManager(app), _client(app) as client:
        body = {"email": "nobody@example.com", "password": PASSWORD}
        statuses = [
            (await client.post("/api/v1/auth/login", json=body)).status_code for _ in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        resp = await client.post("/api/v1/auth/login", json=body)
        assert resp.status_code == 429
        assert 1 <= int(resp.headers["retry-after"]) <= 60
        assert "Too many requests" in resp.json()["detail"]
        assert resp.headers["x-request-id"]
        # Operations endpoints are never limited.
        assert (await client.get("/healthz")).status_code == 200


async def test_user_limit_is_per_user(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"rate_limit_per_user": "3/minute"}))
    async with LifespanManager(app), _client(app) as client:
        ann = await auth_headers(client)
        bob = await auth_headers(client)
        codes = [(await client.get("/api/v1/users/me", headers=ann)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert (await client.get("/api/v1/users/me", headers=bob)).status_code == 200
