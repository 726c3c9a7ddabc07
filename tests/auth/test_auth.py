"""Every auth row of the contract, on both databases and both storage backends."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI

from tests.conftest import JWT_SECRET
from tests.helpers import PASSWORD, auth_headers, login, register


def _assert_401(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"
    assert isinstance(resp.json()["detail"], str)


async def test_register_returns_user(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/v1/auth/register", json={"email": "Ann@Example.com", "password": PASSWORD}
    )
    assert resp.status_code == 201
    body = resp.json()
    assert set(body) == {"id", "email", "created_at"}
    assert body["email"] == "ann@example.com"
    uuid.UUID(body["id"])
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")


async def test_register_conflict_is_case_insensitive(client: httpx.AsyncClient) -> None:
    await register(client, "bob@example.com")
    resp = await client.post(
        "/api/v1/auth/register", json={"email": "BOB@example.com", "password": PASSWORD}
    )
    assert resp.status_code == 409
    assert resp.json() == {"detail": "An account with this email already exists."}


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@example.com", "password": "short"},
        {"email": "a@example.com", "password": "x" * 129},
        {"email": "a@example.com"},
        {},
    ],
)
async def test_register_invalid_is_422(client: httpx.AsyncClient, body: dict[str, str]) -> None:
    resp = await client.post("/api/v1/auth/register", json=body)
    assert resp.status_code == 422
    assert isinstance(resp.json()["detail"], list)


async def test_login_and_me(client: httpx.AsyncClient) -> None:
    user = await register(client)
    tokens = await login(client, user["email"].upper())
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    me = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json() == user


async def test_login_wrong_password_and_unknown_email_look_alike(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": "wrong password"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    _assert_401(wrong)
    _assert_401(unknown)
    assert wrong.json() == unknown.json()


async def test_oauth2_token_form(client: httpx.AsyncClient) -> None:
    user = await register(client)
    resp = await client.post(
        "/api/v1/auth/token", data={"username": user["email"], "password": PASSWORD}
    )
    assert resp.status_code == 200
    assert resp.json()["token_type"] == "bearer"
    bad = await client.post("/api/v1/auth/token", data={"username": user["email"], "password": "x"})
    _assert_401(bad)


async def test_refresh_rotates_and_detects_reuse(client: httpx.AsyncClient) -> None:
    user = await register(client)
    first = await login(client, user["email"])
    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert (
        await client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
        )
    ).status_code == 200
    # The old refresh token is dead...
    reuse = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    _assert_401(reuse)
    # ...and its reuse revoked the whole family, including the newest token.
    newest = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    _assert_401(newest)
    # Another login is a separate family and still works.
    other = await login(client, user["email"])
    ok = await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert ok.status_code == 200


async def test_refresh_unknown_token(client: httpx.AsyncClient) -> None:
    _assert_401(await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"}))


def _token(claims: dict[str, object], secret: str = JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _claims(user_id: str, **overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": uuid.uuid4().hex,
        "iss": "vidlib",
        "type": "access",
    }
    claims.update(overrides)
    return claims


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_bad_tokens_are_401(client: httpx.AsyncClient) -> None:
    user = await register(client)
    uid = user["id"]
    now = datetime.now(UTC)
    tokens = {
        "malformed": "not.a.jwt",
        "garbage": "abc",
        "wrong signature": _token(_claims(uid), secret="another-secret-" + "y" * 40),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(uid))}.",
        "expired": _token(_claims(uid, exp=int((now - timedelta(minutes=1)).timestamp()))),
        "not yet valid": _token(_claims(uid, nbf=int((now + timedelta(minutes=5)).timestamp()))),
        "wrong type": _token(_claims(uid, type="refresh")),
        "unknown user": _token(_claims(str(uuid.uuid4()))),
        "bad subject": _token(_claims("not-a-uuid")),
        "no exp": _token({k: v for k, v in _claims(uid).items() if k != "exp"}),
    }
    for name, token in tokens.items():
        resp = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, name
        assert resp.headers["www-authenticate"] == "Bearer", name
    _assert_401(await client.get("/api/v1/users/me"))
    _assert_401(await client.get("/api/v1/users/me", headers={"Authorization": "Basic abc"}))
    # A good token still works, so the rejections above are about the tokens.
    good = _token(_claims(uid))
    ok = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {good}"})
    assert ok.status_code == 200


async def test_access_token_ttl_is_configurable(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await auth_headers(client)
    token = headers["Authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == app.state.settings.access_token_ttl_seconds
    assert {"sub", "exp", "iat", "jti", "type"} <= set(claims)
