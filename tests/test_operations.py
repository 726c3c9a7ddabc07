"""Health, readiness, metrics, request ids and the error shape."""

from __future__ import annotations

import httpx


async def test_healthz_and_request_id(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    assert len(resp.headers["x-request-id"]) >= 16
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert echoed.headers["x-content-type-options"] == "nosniff"


async def test_readyz_ok(client: httpx.AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text


async def test_metrics_use_route_templates(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/no/such/path/123")
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    text = resp.text
    assert 'vidlib_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "vidlib_http_request_duration_seconds_bucket" in text
    assert "/no/such/path/123" not in text


async def test_error_shapes(client: httpx.AsyncClient) -> None:
    not_found = await client.get("/nope")
    assert not_found.status_code == 404
    assert not_found.json() == {"detail": "Not found."}
    not_allowed = await client.delete("/healthz")
    assert not_allowed.status_code == 405
    assert not_allowed.json() == {"detail": "Method not allowed."}
    bad_json = await client.post(
        "/api/v1/auth/register", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422
    assert isinstance(bad_json.json()["detail"], list)


async def test_openapi_lists_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/users/me",
        "/healthz",
        "/readyz",
    ]:
        assert path in spec["paths"], path
    assert (await client.get("/docs")).status_code == 200


async def test_json_bodies_are_capped(client: httpx.AsyncClient) -> None:
    huge = b'{"email": "a@example.com", "password": "' + b"x" * 70_000 + b'"}'
    resp = await client.post(
        "/api/v1/auth/register", content=huge, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413, (resp.headers, resp.content)
    assert isinstance(resp.json()["detail"], str)
