"""Hardening: user enumeration, secrets in logs, CORS, presigned URLs, caching, 429, auth.

Complements tests/auth (token matrix), tests/test_ratelimit*.py, tests/test_idempotency.py
and tests/storage (presigned URLs at the store level): here the same properties are
checked end to end, through the URLs and answers the API itself hands out.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import re
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from tests.conftest import JWT_SECRET
from tests.fixtures.seaweed import S3Server
from tests.helpers import PASSWORD
from tests.reliability.conftest import make_settings, running, use_s3_credentials
from tests.uploads.conftest import Caller, form, mp4_bytes, new_user, put
from vidlib.auth import passwords
from vidlib.config import load_settings
from vidlib.media.models import MediaLimits
from vidlib.media.source import Deadline, HttpSource
from vidlib.observability.logging import configure_logging
from vidlib.storage.base import MIB

AUTH = "/api/v1/auth"
V = "/api/v1/videos/s3-videos"
DIRECT = "/api/v1/upload/video/direct"


# -- no user enumeration -----------------------------------------------------------------


class VerifySpy:
    """Wraps the password hasher and records which hash each verification used."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.verified: list[str] = []
        self.hashed = 0

    def verify(self, password_hash: str, password: str) -> bool:
        self.verified.append(password_hash)
        result: bool = self.real.verify(password_hash, password)
        return result

    def hash(self, password: str) -> str:
        self.hashed += 1
        result: str = self.real.hash(password)
        return result


@pytest.fixture
def hasher_spy(monkeypatch: pytest.MonkeyPatch) -> VerifySpy:
    spy = VerifySpy(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", spy)
    return spy


def _same_answer(one: httpx.Response, other: httpx.Response) -> None:
    assert (one.status_code, one.json()) == (other.status_code, other.json())
    ignore = {"x-request-id", "date", "content-length"}
    assert {k: v for k, v in one.headers.items() if k not in ignore} == {
        k: v for k, v in other.headers.items() if k not in ignore
    }


async def test_login_does_not_tell_unknown_emails_from_wrong_passwords(
    tmp_path: Path, sqlite_db: str, hasher_spy: VerifySpy
) -> None:
    async with running(make_settings(tmp_path, sqlite_db)) as (_, client):
        email = f"known-{uuid.uuid4().hex[:8]}@example.com"
        creds = {"email": email, "password": PASSWORD}
        assert (await client.post(f"{AUTH}/register", json=creds)).status_code == 201
        real_hash = hasher_spy.verified[-1] if hasher_spy.verified else None
        assert real_hash is None  # registering hashes, it verifies nothing

        wrong = {"email": email, "password": "not the password"}
        unknown = {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
        timings: dict[str, list[float]] = {"wrong": [], "unknown": []}
        answers: dict[str, httpx.Response] = {}
        for _ in range(5):
            for name, body in (("wrong", wrong), ("unknown", unknown)):
                hasher_spy.verified.clear()
                start = time.perf_counter()
                answers[name] = await client.post(f"{AUTH}/login", json=body)
                timings[name].append(time.perf_counter() - start)
                # A real Argon2 verification ran either way: against the user's hash, or
                # against the dummy hash when the email is unknown.
                assert len(hasher_spy.verified) == 1, name
                expected = passwords._DUMMY_HASH if name == "unknown" else None
                if expected is not None:
                    assert hasher_spy.verified[0] == expected
                else:
                    assert hasher_spy.verified[0] != passwords._DUMMY_HASH
                    assert hasher_spy.verified[0].startswith("$argon2id$")
        assert answers["wrong"].status_code == 401
        _same_answer(answers["wrong"], answers["unknown"])
        # A loose bound: this checks the dummy-hash path, it is not a benchmark.
        fast, slow = sorted(statistics.median(t) for t in timings.values())
        assert slow < 3 * fast, timings

        # The OAuth2 form behaves the same.
        form_wrong = await client.post(
            f"{AUTH}/token", data={"username": email, "password": "not the password"}
        )
        form_unknown = await client.post(
            f"{AUTH}/token", data={"username": unknown["email"], "password": PASSWORD}
        )
        _same_answer(form_wrong, form_unknown)


async def test_register_costs_the_same_for_taken_and_free_emails(
    tmp_path: Path, sqlite_db: str, hasher_spy: VerifySpy
) -> None:
    """The contract answers 409 for a taken email (so registration is rate limited per
    address); what it must not add is a timing difference: the hash is computed first."""
    async with running(make_settings(tmp_path, sqlite_db)) as (_, client):
        email = f"taken-{uuid.uuid4().hex[:8]}@example.com"
        assert (
            await client.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD})
        ).status_code == 201
        hasher_spy.hashed = 0
        taken = await client.post(
            f"{AUTH}/register", json={"email": email.upper(), "password": PASSWORD}
        )
        assert taken.status_code == 409
        assert hasher_spy.hashed == 1
        assert "detail" in taken.json()
        assert email not in taken.text


async def test_refresh_failures_look_alike(tmp_path: Path, sqlite_db: str) -> None:
    async with running(make_settings(tmp_path, sqlite_db)) as (_, client):
        creds = {"email": f"r-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
        await client.post(f"{AUTH}/register", json=creds)
        pair = (await client.post(f"{AUTH}/login", json=creds)).json()
        assert (
            await client.post(f"{AUTH}/refresh", json={"refresh_token": pair["refresh_token"]})
        ).status_code == 200
        reused = await client.post(f"{AUTH}/refresh", json={"refresh_token": pair["refresh_token"]})
        unknown = await client.post(f"{AUTH}/refresh", json={"refresh_token": "x" * 43})
        assert reused.status_code == 401
        _same_answer(reused, unknown)


# -- every API route needs a valid token -------------------------------------------------

PUBLIC = {f"{AUTH}/register", f"{AUTH}/login", f"{AUTH}/token", f"{AUTH}/refresh"}


def _fill(path: str) -> str:
    """A concrete URL for a route template."""
    path = path.replace("{s3_key:path}", "uploads/users/x/videos/1_a.mp4")
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def test_every_api_route_requires_a_valid_token(tmp_path: Path, sqlite_db: str) -> None:
    async with running(make_settings(tmp_path, sqlite_db)) as (app, client):
        expired = app.state.jwt_service.issue(uuid.uuid4(), now=datetime(2020, 1, 1)).token
        checked = 0
        for route in iter_route_contexts(app.routes):
            path = route.path or ""
            if not isinstance(route.original_route, APIRoute) or not path.startswith("/api/"):
                continue
            if path in PUBLIC:
                continue
            for method in route.methods or ():
                url = _fill(path)
                for headers in ({}, {"Authorization": f"Bearer {expired}"}):
                    resp = await client.request(method, url, json={}, headers=headers)
                    assert resp.status_code == 401, (method, path, resp.text)
                    assert resp.headers["www-authenticate"] == "Bearer"
                    assert isinstance(resp.json()["detail"], str)
                checked += 1
        assert checked >= 14


# -- secrets never logged ----------------------------------------------------------------


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """What the service logs, exactly as ``vidlib serve`` configures it (structlog JSON),
    with vidlib's loggers at DEBUG and the rest at INFO (the production default)."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    vidlib = logging.getLogger("vidlib")
    saved_vidlib = vidlib.level
    buffer = io.StringIO()
    configure_logging("INFO", json=True)
    structlog.configure(cache_logger_on_first_use=False)
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    vidlib.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        vidlib.setLevel(saved_vidlib)
        structlog.reset_defaults()
        logging.getLogger("uvicorn.access").disabled = False


def _signatures(url: str) -> list[str]:
    query = dict(parse_qsl(urlsplit(url).query))
    return [v for k, v in query.items() if k.lower() in ("x-amz-signature", "signature")]


async def test_secrets_never_reach_the_logs(
    tmp_path: Path,
    postgres_db: str,
    seaweedfs: S3Server,
    s3_bucket: str,
    json_logs: io.StringIO,
) -> None:
    use_s3_credentials(seaweedfs)
    settings = make_settings(
        tmp_path,
        postgres_db,
        s3=(seaweedfs.endpoint_url, s3_bucket),
        rate_limit_auth="5/minute",
    )
    secrets: list[str] = [PASSWORD, JWT_SECRET, seaweedfs.secret_key]
    async with running(settings) as (_, client):
        creds = {"email": f"s-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
        await client.post(f"{AUTH}/register", json=creds)
        pair = (await client.post(f"{AUTH}/login", json=creds)).json()
        wrong = "hunter2-wrong-password"
        secrets.append(wrong)
        await client.post(f"{AUTH}/login", json={**creds, "password": wrong})
        renewed = (
            await client.post(f"{AUTH}/refresh", json={"refresh_token": pair["refresh_token"]})
        ).json()
        await client.post(f"{AUTH}/refresh", json={"refresh_token": pair["refresh_token"]})
        limited = await client.post(f"{AUTH}/login", json={**creds, "password": wrong})
        assert limited.status_code == 429
        secrets += [pair["access_token"], pair["refresh_token"], renewed["access_token"]]
        secrets.append(renewed["refresh_token"])
        headers = {"Authorization": f"Bearer {renewed['access_token']}"}
        forged = pair["access_token"][:-6] + "AAAAAA"
        await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {forged}"})
        secrets.append(forged.rsplit(".", 1)[1])

        body, form_headers = form(mp4_bytes(20_000))
        uploaded = await client.post(
            "/api/v1/upload/video", content=body, headers={**headers, **form_headers}
        )
        assert uploaded.status_code == 201, uploaded.text
        secrets += _signatures(uploaded.json()["video"]["s3_url"])
        spec = {"filename": "d.mp4", "content_type": "video/mp4", "file_size": 7 * MIB}
        session = (await client.post(DIRECT, json=spec, headers=headers)).json()
        for part in session["parts"]:
            secrets += _signatures(part["url"])
        listing = (await client.get(V, headers=headers)).json()
        for video in listing["videos"]:
            secrets += _signatures(video["s3_url"])
        await client.get(f"{V}/recent", headers=headers)

        # Media processing reads the video through a presigned URL.
        source = HttpSource(
            uploaded.json()["video"]["s3_url"], limits=MediaLimits(), deadline=Deadline(30)
        )
        try:
            assert len(await asyncio.to_thread(source.fetch, 0, 4096, 4096)) == 4096
        finally:
            source.close()

    logged = json_logs.getvalue()
    lines = [line for line in logged.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r.get("event") == "request" for r in records), logged[:2000]
    assert any(r.get("status") == 429 for r in records)
    for secret in secrets:
        assert len(secret) >= 6
        assert secret not in logged, f"a secret reached the logs: {secret[:4]}…"


# -- CORS from configuration only --------------------------------------------------------


async def test_cors_only_from_configuration(tmp_path: Path, sqlite_db: str) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with running(make_settings(tmp_path, sqlite_db)) as (_, client):
        for origin in ("https://app.example", "https://evil.example"):
            got = await client.get("/healthz", headers={"Origin": origin})
            assert "access-control-allow-origin" not in got.headers
            pre = await client.options(f"{AUTH}/login", headers={"Origin": origin, **preflight})
            assert "access-control-allow-origin" not in pre.headers

    allowed = "https://app.example"
    async with running(make_settings(tmp_path, sqlite_db, cors_origins=[allowed])) as (_, client):
        got = await client.get("/healthz", headers={"Origin": allowed})
        assert got.headers["access-control-allow-origin"] == allowed
        assert "x-request-id" in got.headers["access-control-expose-headers"].lower()
        assert "access-control-allow-credentials" not in got.headers
        pre = await client.options(f"{AUTH}/login", headers={"Origin": allowed, **preflight})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == allowed
        for origin in ("https://evil.example", "https://app.example.evil.example", "null"):
            got = await client.get("/healthz", headers={"Origin": origin})
            assert "access-control-allow-origin" not in got.headers, origin
            pre = await client.options(f"{AUTH}/login", headers={"Origin": origin, **preflight})
            assert "access-control-allow-origin" not in pre.headers, origin


def test_cors_origins_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIDLIB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("VIDLIB_CORS_ORIGINS", raising=False)
    assert load_settings().cors_origins == []
    monkeypatch.setenv("VIDLIB_CORS_ORIGINS", "https://a.example, https://b.example")
    assert load_settings().cors_origins == ["https://a.example", "https://b.example"]


# -- presigned URLs ----------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, sqlite_db: str) -> dict[str, Any]:
    """Settings on SQLite with either store."""
    s3: tuple[str, str] | None = None
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("seaweedfs")
        use_s3_credentials(server)
        s3 = (server.endpoint_url, request.getfixturevalue("s3_bucket"))
    return {"settings": make_settings(tmp_path, sqlite_db, s3=s3), "kind": request.param}


async def test_presigned_put_is_bound_to_type_and_length_and_cannot_overwrite(
    storage: dict[str, Any],
) -> None:
    async with running(storage["settings"]) as (app, client):
        user = await new_user(app)
        data = mp4_bytes(4000)
        spec = {"filename": "p.mp4", "content_type": "video/mp4", "file_size": len(data)}
        resp = await client.post(DIRECT, json=spec, headers=user.headers)
        assert resp.status_code == 201, resp.text
        session = resp.json()
        url, signed = session["url"], session["headers"]
        assert signed["Content-Type"] == "video/mp4"
        assert signed["Content-Length"] == str(len(data))
        assert signed["If-None-Match"] == "*"

        longer = data + b"!"
        attempts = [
            (longer, {**signed, "Content-Length": str(len(longer))}),
            (data[:-1], {**signed, "Content-Length": str(len(data) - 1)}),
            (data, {**signed, "Content-Type": "text/html"}),
            (data, {**signed, "Content-Type": "video/quicktime"}),
        ]
        for body, headers in attempts:
            refused = await put(client, url, body, headers)
            assert refused.status_code in (400, 403), (headers, refused.status_code)
        if storage["kind"] == "s3":
            # S3 checks every signed header: leaving the precondition out breaks the signature.
            bare = {k: v for k, v in signed.items() if k != "If-None-Match"}
            assert (await put(client, url, data, bare)).status_code == 403
        state = await client.get(f"{DIRECT}/{session['upload_id']}", headers=user.headers)
        assert state.json()["parts"] == []

        assert (await put(client, url, data, signed)).status_code == 200
        again = await put(client, url, mp4_bytes(4000), signed)
        assert again.status_code == 412, again.text
        done = await client.post(f"{DIRECT}/{session['upload_id']}/complete", headers=user.headers)
        assert done.status_code == 201, done.text
        stored = await app.state.store.get_range(done.json()["video"]["s3_key"], 0)
        assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()


async def test_presigned_urls_are_short_lived(storage: dict[str, Any]) -> None:
    async with running(storage["settings"]) as (app, client):
        user = await new_user(app)
        body, headers = form(mp4_bytes(10_000))
        resp = await client.post(
            "/api/v1/upload/video", content=body, headers={**user.headers, **headers}
        )
        query = dict(parse_qsl(urlsplit(resp.json()["video"]["s3_url"]).query))
        ttl = app.state.settings.url_ttl_seconds
        if storage["kind"] == "s3":
            assert int(query["X-Amz-Expires"]) == ttl
        else:
            assert abs(int(query["expires"]) - (time.time() + ttl)) < 60


# -- Cache-Control: no-store wherever a presigned URL is handed out ----------------------


def _carries_urls(schema: Any, components: dict[str, Any], seen: set[str]) -> bool:
    """True when a response schema (recursively) has a ``url`` or ``*_url`` property."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[1]
            if name in seen:
                return False
            seen.add(name)
            return _carries_urls(components[name], components, seen)
        props = schema.get("properties", {})
        if any(p == "url" or p.endswith("_url") for p in props):
            return True
        return any(_carries_urls(v, components, seen) for v in schema.values())
    if isinstance(schema, list):
        return any(_carries_urls(v, components, seen) for v in schema)
    return False


def url_bearing_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation whose success answers carry URLs."""
    spec = app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    found = set()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, response in op.get("responses", {}).items():
                if str(status).startswith("2") and _carries_urls(response, components, set()):
                    found.add((method.upper(), path))
    return found


async def _no_store_cases(app: FastAPI, client: httpx.AsyncClient) -> dict[tuple[str, str], Any]:
    user: Caller = await new_user(app)
    h = user.headers
    data = mp4_bytes(30_000)
    body, fh = form(data)
    uploaded = await client.post("/api/v1/upload/video", content=body, headers={**h, **fh})
    dedup = await client.post("/api/v1/upload/video", content=body, headers={**h, **fh})
    vid = uploaded.json()["video"]["id"]
    key = uploaded.json()["video"]["s3_key"]
    spec = {"filename": "d.mp4", "content_type": "video/mp4", "file_size": 3000}
    single = await client.post(DIRECT, json=spec, headers=h)
    multi = await client.post(DIRECT, json={**spec, "file_size": 7 * MIB}, headers=h)
    same = await client.post(
        DIRECT, json={**spec, "sha256": hashlib.sha256(data).hexdigest()}, headers=h
    )
    await put(client, single.json()["url"], mp4_bytes(3000), single.json()["headers"])
    complete = await client.post(f"{DIRECT}/{single.json()['upload_id']}/complete", headers=h)
    parts = await client.post(
        f"{DIRECT}/{multi.json()['upload_id']}/parts", json={"part_numbers": [1]}, headers=h
    )
    patched = await client.patch(f"{V}/{vid}", json={"filename": "x.mp4"}, headers=h)
    extra = await client.post(
        "/api/v1/upload/video", content=form(mp4_bytes(9000))[0], headers={**h, **fh}
    )
    gone = extra.json()["video"]["id"]
    await client.delete(f"{V}/{gone}", headers=h)
    restored = await client.post(f"{V}/{gone}/restore", headers=h)
    replayed = await client.patch(
        f"{V}/{vid}", json={"filename": "y.mp4"}, headers={**h, "Idempotency-Key": "k1"}
    )
    replay = await client.patch(
        f"{V}/{vid}", json={"filename": "y.mp4"}, headers={**h, "Idempotency-Key": "k1"}
    )
    assert replay.headers.get("idempotent-replayed") == "true"
    cases: dict[tuple[str, str], Any] = {
        ("GET", V): [await client.get(V, headers=h)],
        ("GET", f"{V}/recent"): [await client.get(f"{V}/recent", headers=h)],
        ("GET", f"{V}/by-key/{{s3_key}}"): [await client.get(f"{V}/by-key/{key}", headers=h)],
        ("GET", f"{V}/{{video_id}}"): [await client.get(f"{V}/{vid}", headers=h)],
        ("PATCH", f"{V}/{{video_id}}"): [patched, replayed, replay],
        ("POST", f"{V}/{{video_id}}/restore"): [restored],
        ("POST", "/api/v1/upload/video"): [uploaded, dedup],
        ("POST", DIRECT): [single, multi, same],
        ("POST", f"{DIRECT}/{{upload_id}}/complete"): [complete],
        ("POST", f"{DIRECT}/{{upload_id}}/parts"): [parts],
    }
    assert dedup.json()["deduplicated"] is True
    assert same.status_code == 200
    return cases


async def test_every_answer_with_presigned_urls_is_no_store(storage: dict[str, Any]) -> None:
    async with running(storage["settings"]) as (app, client):
        cases = await _no_store_cases(app, client)
        missing = url_bearing_operations(app) - set(cases)
        assert not missing, f"operations handing out URLs without a no-store case: {missing}"
        for operation, responses in cases.items():
            for resp in responses:
                assert resp.status_code < 300, (operation, resp.status_code, resp.text)
                assert resp.headers.get("cache-control") == "no-store", operation


# -- 429 carries Retry-After -------------------------------------------------------------


async def test_rate_limited_answers_carry_retry_after(tmp_path: Path, sqlite_db: str) -> None:
    settings = make_settings(tmp_path, sqlite_db, rate_limit_per_user="3/minute")
    async with running(settings) as (app, client):
        user = await new_user(app)
        statuses = [(await client.get(V, headers=user.headers)).status_code for _ in range(3)]
        assert statuses == [200] * 3
        for method, path in (("GET", V), ("POST", "/api/v1/upload/video"), ("POST", DIRECT)):
            limited = await client.request(method, path, headers=user.headers)
            assert limited.status_code == 429, (method, path)
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert limited.headers["content-type"] == "application/json"
            assert isinstance(limited.json()["detail"], str)
        # Another user is not affected.
        other = await new_user(app)
        assert (await client.get(V, headers=other.headers)).status_code == 200
