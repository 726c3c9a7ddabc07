"""Schemathesis against the served OpenAPI schema: no 5xx, no response outside the schema.

The app runs under uvicorn in a background thread (lifespan on: engine, store and
cache are opened exactly as in production) on SQLite and the local store, and is
fuzzed over real HTTP. Every case carries a real user's bearer token, so the
fuzzer gets past authentication into the handlers. Path parameters that name a
resource are, for about half of the cases, swapped for one the user really owns
(a video, its key, an upload session), so fuzzed bodies reach the code behind a
successful lookup as well as the 404s.

Every operation in the schema is fuzzed; nothing is excluded. The local store's
signed ``/storage/...`` routes are not in the schema (clients only follow URLs
the API hands out); tests/reliability/test_hardening.py covers them.

``VIDLIB_FUZZ_EXAMPLES`` sets the number of examples per operation (default 50).
"""

from __future__ import annotations

import os
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import PASSWORD
from tests.reliability.conftest import free_port, make_settings, running, serve_in_thread
from tests.uploads.conftest import form, mp4_bytes, new_user
from vidlib.app import create_app
from vidlib.db.migrate import upgrade
from vidlib.storage.base import MIB

EXAMPLES = int(os.environ.get("VIDLIB_FUZZ_EXAMPLES", "50"))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@dataclass
class FuzzTarget:
    """The served app and what its fuzzing user owns."""

    url: str
    headers: dict[str, str]
    owned: dict[str, list[str]] = field(default_factory=dict)


def _seed(client: httpx.Client, headers: dict[str, str]) -> dict[str, list[str]]:
    """Give the user videos, a transcript and direct upload sessions to aim at."""
    videos: list[str] = []
    keys: list[str] = []
    for n in range(3):
        body, form_headers = form(mp4_bytes(20_000 + n), filename=f"seed {n}.mp4")
        resp = client.post(
            "/api/v1/upload/video", content=body, headers={**headers, **form_headers}
        )
        assert resp.status_code == 201, resp.text
        videos.append(resp.json()["video"]["id"])
        keys.append(resp.json()["video"]["s3_key"])
    uploads: list[str] = []
    for size in (1000, 70 * MIB):  # one single PUT, one multipart
        resp = client.post(
            "/api/v1/upload/video/direct",
            json={"filename": "direct.mp4", "content_type": "video/mp4", "file_size": size},
            headers=headers,
        )
        assert resp.status_code == 201, resp.text
        uploads.append(resp.json()["upload_id"])
    body, form_headers = form(b"hello there\n", filename="notes.txt")
    resp = client.post(
        "/api/v1/upload/transcript", content=body, headers={**headers, **form_headers}
    )
    assert resp.status_code == 201, resp.text
    return {"video_id": videos, "s3_key": keys, "upload_id": uploads}


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """The app on SQLite and the local store, served over HTTP with a seeded user."""
    base: Path = tmp_path_factory.mktemp("fuzz")
    database_url = f"sqlite+aiosqlite:///{base / 'fuzz.db'}"
    upgrade(database_url)
    port = free_port()
    app = create_app(
        make_settings(
            base,
            database_url,
            public_url=f"http://127.0.0.1:{port}",
            max_upload_bytes=128 * MIB,
        )
    )
    with serve_in_thread(app, port) as url, httpx.Client(base_url=url, timeout=30) as client:
        # The lifespan ran: the resources exist and answer.
        assert app.state.engine is not None
        assert app.state.store is not None
        assert client.get("/readyz").status_code == 200
        email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
        creds = {"email": email, "password": PASSWORD}
        assert client.post("/api/v1/auth/register", json=creds).status_code == 201
        token = client.post("/api/v1/auth/login", json=creds).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        # What is fuzzed is exactly what the running app serves.
        assert client.get("/openapi.json").json() == OPENAPI
        yield FuzzTarget(url, headers, _seed(client, headers))


def _openapi() -> dict[str, Any]:
    """The app's schema, built at collection time so that each operation is a test."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(make_settings(Path(tmp), "sqlite+aiosqlite:///unused.db"))
        return app.openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def _aim_at_owned(case: schemathesis.Case[Any], target: FuzzTarget) -> None:
    """About half the time, replace resource ids in the path by ones the user owns."""
    params = case.path_parameters
    if not params:
        return
    for name, owned in target.owned.items():
        if name in params and owned:
            pick = zlib.crc32(repr(params[name]).encode())
            if pick % 2 == 0:
                params[name] = owned[(pick // 2) % len(owned)]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_every_operation(case: schemathesis.Case[Any], fuzz_target: FuzzTarget) -> None:
    _aim_at_owned(case, fuzz_target)
    response = case.call_and_validate(
        base_url=fuzz_target.url, headers=fuzz_target.headers, checks=CHECKS, timeout=30
    )
    video_id = (case.path_parameters or {}).get("video_id")
    if case.method == "DELETE" and response.status_code == 204 and video_id:
        # Keep the seeded videos live, so that later cases still meet them.
        httpx.post(
            f"{fuzz_target.url}/api/v1/videos/s3-videos/{video_id}/restore",
            headers=fuzz_target.headers,
            timeout=30,
        )


PUBLIC = {"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/token"}
PUBLIC_WITH_TOKEN_BODY = {"/api/v1/auth/refresh"}


def _documented(op: dict[str, Any]) -> set[int]:
    return {int(code) for code in op["responses"] if str(code).isdigit()}


def test_schema_documents_what_every_route_can_answer() -> None:
    """What middleware and handlers can answer on every route is in the schema.

    Random examples may never meet a 429 or a 503; this states them for every route:
    rate limits and outages on every API route, 401 where a token is needed, the
    Idempotency-Key answers (409/422) and the body cap (413) on authenticated writes,
    and the contract's error bodies for every error status.
    """
    problems: list[str] = []
    for path, ops in OPENAPI["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in ops.items():
            codes = _documented(op)
            needed = {429, 503}
            if path not in PUBLIC | PUBLIC_WITH_TOKEN_BODY:
                needed.add(401)
            if "requestBody" in op:
                needed |= {413, 422}
            if method in ("post", "patch", "delete") and not path.startswith("/api/v1/auth/"):
                needed |= {409, 413, 422}
            if missing := needed - codes:
                problems.append(f"{method.upper()} {path}: undocumented {sorted(missing)}")
            for code, response in op["responses"].items():
                if not str(code).startswith(("4", "5")):
                    continue
                ref = response.get("content", {}).get("application/json", {}).get("schema", {})
                want = "ValidationErrorOut" if str(code) == "422" else "ErrorOut"
                if not str(ref.get("$ref", "")).endswith(f"/{want}"):
                    problems.append(f"{method.upper()} {path} {code}: body is not {want}")
            if 429 in codes and "Retry-After" not in op["responses"]["429"].get("headers", {}):
                problems.append(f"{method.upper()} {path} 429: no Retry-After header")
    assert not problems, "\n".join(problems)


async def test_fuzz_findings_stay_fixed(tmp_path: Path, sqlite_db: str) -> None:
    """The inputs the fuzzer found, pinned: each was a 500 or an undocumented 400."""
    async with running(make_settings(tmp_path, sqlite_db)) as (app, client):
        user = await new_user(app)
        not_utf8 = await client.post(
            "/api/v1/auth/login",
            content=b')m\xe9\xff"t',
            headers={"Content-Type": "application/json"},
        )
        assert not_utf8.status_code == 422, not_utf8.text
        assert not_utf8.json()["detail"][0]["type"] == "json_invalid"
        broken_form = await client.post(
            "/api/v1/auth/token",
            content=b"garbage",
            headers={"Content-Type": "multipart/form-data; boundary=abc"},
        )
        assert broken_form.status_code == 422, broken_form.text
        assert isinstance(broken_form.json()["detail"], str)
        # A part name beyond Latin-1 (sent raw as UTF-8, as browsers do).
        body = (
            b'--b\r\nContent-Disposition: form-data; name="\xf0\xaf\x96\x91"\r\n\r\nx\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
            b"hello\r\n--b--\r\n"
        )
        for path in ("/api/v1/upload/video", "/api/v1/upload/transcript"):
            resp = await client.post(
                path,
                content=body,
                headers={**user.headers, "Content-Type": "multipart/form-data; boundary=b"},
            )
            assert resp.status_code == 422, (path, resp.text)
            assert "Content-Disposition" in resp.json()["detail"]
