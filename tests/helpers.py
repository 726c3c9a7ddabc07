"""Small helpers shared by the API tests."""

from __future__ import annotations

import uuid

import httpx

PASSWORD = "correct horse battery"


async def register(client: httpx.AsyncClient, email: str | None = None) -> dict[str, str]:
    """Register a user and return its JSON body (id, email, created_at)."""
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    resp = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    body: dict[str, str] = resp.json()
    return body


async def login(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Log in and return the token pair."""
    resp = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    body: dict[str, str] = resp.json()
    return body


async def auth_headers(client: httpx.AsyncClient, email: str | None = None) -> dict[str, str]:
    """Register a fresh user and return its Authorization header."""
    user = await register(client, email)
    tokens = await login(client, user["email"])
    return {"Authorization": f"Bearer {tokens['access_token']}"}
