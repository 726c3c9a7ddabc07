"""User B against user A's resources, on every route that names one: 404, and nothing changes.

The routes are discovered from the application, not listed by hand: any route with
a video, upload, transcript or job id, or an object key, in its path or body must
have a case here, so a new route without one fails ``test_every_resource_route_has_a_case``.

Each case is sent twice by B: once naming A's resource, once naming a resource that
never existed. Both answers must be the same 404 ("exactly as if it did not exist").
The local store's signed ``/storage/...`` routes are not per-user API routes: they
answer 403 to any URL whose signature does not cover the key (or upload) requested,
which is what B gets when grafting its own valid signature onto A's key.

Around every attempt the whole database (every row of every table), the storage
listing and the incomplete multipart uploads are compared: byte for byte the same.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from tests.conftest import _sync_url
from tests.fixtures.seaweed import S3Server
from tests.reliability.conftest import make_settings, running, use_s3_credentials
from tests.uploads.conftest import (
    Caller,
    form,
    mp4_bytes,
    new_user,
    pending_multipart,
    put,
    stored_keys,
)
from vidlib.storage.base import MIB

# Names of path parameters and body fields that point at a stored resource.
RESOURCE_FIELD = re.compile(r"(?:^|_)(?:id|key)$")


def resource_fields(route: Any) -> set[str]:
    """The resource-naming path parameters and body fields of a route."""
    names = {n for n in (route.param_convertors or {}) if RESOURCE_FIELD.search(n)}
    original = route.original_route
    if isinstance(original, APIRoute):
        for param in original.dependant.body_params:
            annotation = param.field_info.annotation
            models = [annotation, *getattr(annotation, "__args__", ())]
            for model in models:
                if isinstance(model, type) and issubclass(model, BaseModel):
                    names |= {n for n in model.model_fields if RESOURCE_FIELD.search(n)}
    return names


def resource_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route that names a resource."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        if route.path and resource_fields(route):
            found |= {(method, route.path) for method in route.methods or ()}
    return found


@dataclass
class Owned:
    """One user's resources, by the names the routes use (or ones that never existed)."""

    video_id: str
    deleted_video_id: str
    s3_key: str
    stream_upload_id: str
    put_upload_id: str
    multipart_upload_id: str
    storage_upload_id: str
    transcript_id: str
    job_id: str | None = None

    @classmethod
    def ghost(cls) -> Owned:
        """Resources nobody has."""
        return cls(
            video_id=str(uuid.uuid4()),
            deleted_video_id=str(uuid.uuid4()),
            s3_key=f"uploads/users/{uuid.uuid4()}/videos/1700000000_ghost.mp4",
            stream_upload_id=str(uuid.uuid4()),
            put_upload_id=str(uuid.uuid4()),
            multipart_upload_id=str(uuid.uuid4()),
            storage_upload_id=uuid.uuid4().hex,
            transcript_id=str(uuid.uuid4()),
            job_id=str(uuid.uuid4()),
        )


@dataclass
class World:
    """A's resources, B's own, and B's signed URLs to graft onto A's keys."""

    app: FastAPI
    client: httpx.AsyncClient
    a: Caller
    b: Caller
    mine: Owned
    b_video_id: str
    b_get_url: str
    b_put: dict[str, Any] = field(default_factory=dict)
    b_part_url: str = ""


def graft(signed_url: str, path: str) -> str:
    """B's valid signature (query string) on another path."""
    query = dict(parse_qsl(urlsplit(signed_url).query))
    return f"{path}?{urlencode(query)}"


Attempt = Callable[[World, Owned], Awaitable[httpx.Response]]
V = "/api/v1/videos/s3-videos"
U = "/api/v1/upload/video/direct"
J = "/api/v1/jobs"


def _b(w: World) -> dict[str, str]:
    return w.b.headers


CASES: dict[tuple[str, str], list[Attempt]] = {
    ("GET", f"{V}/by-key/{{s3_key:path}}"): [
        lambda w, r: w.client.get(f"{V}/by-key/{r.s3_key}", headers=_b(w)),
    ],
    ("GET", f"{V}/{{video_id}}"): [
        lambda w, r: w.client.get(f"{V}/{r.video_id}", headers=_b(w)),
        lambda w, r: w.client.get(f"{V}/{r.deleted_video_id}", headers=_b(w)),
    ],
    ("PATCH", f"{V}/{{video_id}}"): [
        lambda w, r: w.client.patch(
            f"{V}/{r.video_id}",
            json={"filename": "mine-now.mp4", "metadata": {"owner": "b"}},
            headers=_b(w),
        ),
    ],
    ("DELETE", f"{V}/{{video_id}}"): [
        lambda w, r: w.client.delete(f"{V}/{r.video_id}", headers=_b(w)),
    ],
    ("POST", f"{V}/{{video_id}}/restore"): [
        lambda w, r: w.client.post(f"{V}/{r.deleted_video_id}/restore", headers=_b(w)),
        lambda w, r: w.client.post(f"{V}/{r.video_id}/restore", headers=_b(w)),
    ],
    ("GET", f"{U}/{{upload_id}}"): [
        lambda w, r: w.client.get(f"{U}/{r.put_upload_id}", headers=_b(w)),
        lambda w, r: w.client.get(f"{U}/{r.multipart_upload_id}", headers=_b(w)),
    ],
    ("POST", f"{U}/{{upload_id}}/parts"): [
        lambda w, r: w.client.post(
            f"{U}/{r.multipart_upload_id}/parts", json={"part_numbers": [1]}, headers=_b(w)
        ),
    ],
    ("DELETE", f"{U}/{{upload_id}}"): [
        lambda w, r: w.client.delete(f"{U}/{r.put_upload_id}", headers=_b(w)),
        lambda w, r: w.client.delete(f"{U}/{r.multipart_upload_id}", headers=_b(w)),
    ],
    ("POST", f"{U}/{{upload_id}}/complete"): [
        # A's bytes are in storage: completing would add them to B's library.
        lambda w, r: w.client.post(f"{U}/{r.put_upload_id}/complete", headers=_b(w)),
        lambda w, r: w.client.post(
            f"{U}/{r.multipart_upload_id}/complete", json={"parts": []}, headers=_b(w)
        ),
    ],
    ("POST", f"{J}/create"): [
        lambda w, r: w.client.post(f"{J}/create", json={"s3_video_id": r.video_id}, headers=_b(w)),
        lambda w, r: w.client.post(
            f"{J}/create", json={"video_upload_id": r.stream_upload_id}, headers=_b(w)
        ),
        lambda w, r: w.client.post(
            f"{J}/create",
            json={"s3_video_id": w.b_video_id, "transcript_upload_id": r.transcript_id},
            headers=_b(w),
        ),
    ],
    ("GET", f"{J}/{{job_id}}"): [
        lambda w, r: w.client.get(f"{J}/{r.job_id}", headers=_b(w)),
    ],
    ("POST", f"{J}/{{job_id}}/cancel"): [
        lambda w, r: w.client.post(f"{J}/{r.job_id}/cancel", headers=_b(w)),
    ],
}
# Signed local-store URLs: B's own signature grafted onto A's key or upload.
STORAGE_CASES: dict[tuple[str, str], list[Attempt]] = {
    ("GET", "/storage/{key:path}"): [
        lambda w, r: w.client.get(graft(w.b_get_url, f"/storage/{r.s3_key}")),
        lambda w, r: w.client.get(f"/storage/{r.s3_key}"),
    ],
    ("HEAD", "/storage/{key:path}"): [
        lambda w, r: w.client.head(graft(w.b_get_url, f"/storage/{r.s3_key}")),
    ],
    ("PUT", "/storage/{key:path}"): [
        lambda w, r: w.client.put(
            graft(w.b_put["url"], f"/storage/{r.s3_key}"),
            content=mp4_bytes(int(w.b_put["headers"]["Content-Length"])),
            headers=w.b_put["headers"],
        ),
    ],
    ("PUT", "/storage/_multipart/{upload_id}/{part_number}"): [
        lambda w, r: w.client.put(
            graft(w.b_part_url, f"/storage/_multipart/{r.storage_upload_id}/1"),
            content=b"\0" * 1024,
        ),
    ],
}


def test_cases_name_existing_routes() -> None:
    """Every case targets a route template spelled as the app spells it."""
    for method, path in [*CASES, *STORAGE_CASES]:
        assert method in {"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"}
        assert path.startswith(("/api/v1/", "/storage/")), path


# -- the world -------------------------------------------------------------------------


async def _stream_upload(w_client: httpx.AsyncClient, caller: Caller, size: int) -> dict[str, Any]:
    body, headers = form(mp4_bytes(size))
    resp = await w_client.post(
        "/api/v1/upload/video", content=body, headers={**caller.headers, **headers}
    )
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def _direct(client: httpx.AsyncClient, caller: Caller, size: int) -> dict[str, Any]:
    spec = {"filename": "direct.mp4", "content_type": "video/mp4", "file_size": size}
    resp = await client.post(U, json=spec, headers=caller.headers)
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


def _storage_id(url: str) -> str:
    """The storage upload id in a part URL (local store: in the path; S3: uploadId=)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return query.get("uploadId") or parts.path.split("/")[3]


async def build_world(app: FastAPI, client: httpx.AsyncClient) -> World:
    """A with a live and a deleted video, sessions, a transcript (and a job); B with its own."""
    a, b = await new_user(app), await new_user(app)
    live = await _stream_upload(client, a, 30_000)
    gone = await _stream_upload(client, a, 31_000)
    assert (await client.delete(f"{V}/{gone['video']['id']}", headers=a.headers)).status_code == 204
    put_session = await _direct(client, a, 2_000)
    sent = await put(client, put_session["url"], mp4_bytes(2_000), put_session["headers"])
    assert sent.status_code == 200, sent.text
    multipart = await _direct(client, a, 7 * MIB)
    body, headers = form(b"WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n", filename="a.vtt")
    resp = await client.post(
        "/api/v1/upload/transcript", content=body, headers={**a.headers, **headers}
    )
    assert resp.status_code == 201, resp.text
    mine = Owned(
        video_id=live["video"]["id"],
        deleted_video_id=gone["video"]["id"],
        s3_key=live["video"]["s3_key"],
        stream_upload_id=live["upload_id"],
        put_upload_id=put_session["upload_id"],
        multipart_upload_id=multipart["upload_id"],
        storage_upload_id=_storage_id(multipart["parts"][0]["url"]),
        transcript_id=resp.json()["transcript_upload_id"],
    )
    if ("POST", f"{J}/create") in resource_routes(app):
        job = await client.post(
            f"{J}/create",
            json={"s3_video_id": mine.video_id, "transcript_upload_id": mine.transcript_id},
            headers=a.headers,
        )
        assert job.status_code == 201, job.text
        mine.job_id = job.json()["id"]

    b_live = await _stream_upload(client, b, 32_000)
    b_put = await _direct(client, b, 2_000)
    b_multipart = await _direct(client, b, 7 * MIB)
    await background_settled(app)
    return World(
        app=app,
        client=client,
        a=a,
        b=b,
        mine=mine,
        b_video_id=b_live["video"]["id"],
        b_get_url=b_live["video"]["s3_url"],
        b_put=b_put,
        b_part_url=b_multipart["parts"][0]["url"],
    )


async def background_settled(app: FastAPI, within: float = 30) -> None:
    """Wait until no video is being ingested and no job is running: their writes (a
    video turning ready or failed, its owner's library version) must not land between
    two snapshots."""
    busy = sa.text(
        "SELECT (SELECT count(*) FROM videos WHERE status = 'processing')"
        " + (SELECT count(*) FROM jobs WHERE status = 'running')"
    )
    deadline = time.monotonic() + within
    while True:
        async with app.state.sessionmaker() as session:
            if not (await session.execute(busy)).scalar_one():
                return
        if time.monotonic() > deadline:
            raise AssertionError("background work did not settle")
        await asyncio.sleep(0.05)


# -- what must not change --------------------------------------------------------------


def dump_database(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (the schema as it is, not as the models say)."""
    engine = sa.create_engine(_sync_url(url))
    try:
        with engine.connect() as conn:
            tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
            return {
                table: sorted(
                    (tuple(row) for row in conn.execute(sa.text(f'SELECT * FROM "{table}"'))),
                    key=repr,
                )
                for table in tables
            }
    finally:
        engine.dispose()


async def snapshot(w: World, database_url: str) -> tuple[Any, ...]:
    """The database, the storage listing and the pending multipart uploads."""
    store = w.app.state.store
    objects = sorted([(o.key, o.size, o.etag) async for o in store.list("uploads/")])
    return (dump_database(database_url), objects, sorted(await pending_multipart(store)))


async def a_view(w: World) -> list[Any]:
    """What A sees through the API (URLs aside: they are re-signed on every call)."""
    r = w.mine
    view: list[Any] = []
    for path in (f"{V}/{r.video_id}", f"{U}/{r.put_upload_id}", f"{U}/{r.multipart_upload_id}"):
        resp = await w.client.get(path, headers=w.a.headers)
        assert resp.status_code == 200, (path, resp.text)
        body = resp.json()
        body.pop("s3_url", None)
        body.pop("thumbnail_url", None)
        view.append(body)
    listing = await w.client.get(V, headers=w.a.headers)
    view.append([v["id"] for v in listing.json()["videos"]])
    if r.job_id:
        view.append((await w.client.get(f"{J}/{r.job_id}", headers=w.a.headers)).json())
    return view


# -- the tests -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite+local", "postgres+s3"])
def backend(request: pytest.FixtureRequest) -> tuple[str, tuple[str, str] | None]:
    """A database URL and, for S3, (endpoint, bucket)."""
    db, storage = str(request.param).split("+")
    database_url: str = request.getfixturevalue(f"{db}_db")
    s3: tuple[str, str] | None = None
    if storage == "s3":
        server: S3Server = request.getfixturevalue("seaweedfs")
        use_s3_credentials(server)
        s3 = (server.endpoint_url, request.getfixturevalue("s3_bucket"))
    return database_url, s3


async def test_every_resource_route_has_a_case(tmp_path: Path, sqlite_db: str) -> None:
    async with running(make_settings(tmp_path, sqlite_db)) as (app, _):
        missing = resource_routes(app) - set(CASES) - set(STORAGE_CASES)
    assert not missing, f"routes naming a resource without an isolation case: {sorted(missing)}"


async def test_another_users_resources_are_404_and_untouched(
    tmp_path: Path, backend: tuple[str, tuple[str, str] | None]
) -> None:
    database_url, s3 = backend
    async with running(make_settings(tmp_path, database_url, s3=s3)) as (app, client):
        routes = resource_routes(app)
        assert not routes - set(CASES) - set(STORAGE_CASES)
        w = await build_world(app, client)
        ghost = Owned.ghost()
        before_view = await a_view(w)
        before = await snapshot(w, database_url)
        for route, attempts in sorted({**CASES, **STORAGE_CASES}.items()):
            if route not in routes:
                continue  # e.g. /storage/... exists only with the local store
            expected = 403 if route[1].startswith("/storage/") else 404
            for n, attempt in enumerate(attempts):
                theirs = await attempt(w, w.mine)
                nobodys = await attempt(w, ghost)
                where = f"{route} attempt {n}"
                assert theirs.status_code == expected, (where, theirs.status_code, theirs.text)
                assert nobodys.status_code == expected, (where, nobodys.status_code)
                if route[0] != "HEAD":
                    assert isinstance(theirs.json()["detail"], str), where
                    if expected == 404:
                        # Indistinguishable from a resource that never existed.
                        assert theirs.json() == nobodys.json(), where
                assert await snapshot(w, database_url) == before, f"{where} changed something"
        assert await a_view(w) == before_view
        # The resources were real: A can still finish its upload.
        done = await client.post(f"{U}/{w.mine.put_upload_id}/complete", headers=w.a.headers)
        assert done.status_code == 201, done.text
        assert w.mine.s3_key in await stored_keys(app.state.store)


async def test_claimed_hash_of_another_users_video_is_not_deduplicated(
    tmp_path: Path, sqlite_db: str
) -> None:
    """A direct upload claiming the sha256 of A's bytes must not hand B A's video."""
    import hashlib

    async with running(make_settings(tmp_path, sqlite_db)) as (app, client):
        a, b = await new_user(app), await new_user(app)
        data = mp4_bytes(40_000)
        body, headers = form(data)
        resp = await client.post(
            "/api/v1/upload/video", content=body, headers={**a.headers, **headers}
        )
        assert resp.status_code == 201
        claim = {
            "filename": "x.mp4",
            "content_type": "video/mp4",
            "file_size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        direct = await client.post(U, json=claim, headers=b.headers)
        assert direct.status_code == 201, direct.text
        assert "video" not in direct.json()
        # The same bytes streamed by B are B's own copy, not A's video.
        again = await client.post(
            "/api/v1/upload/video", content=body, headers={**b.headers, **headers}
        )
        assert again.status_code == 201, again.text
        assert again.json()["deduplicated"] is False
        assert again.json()["video"]["id"] != resp.json()["video"]["id"]
        assert (await client.get(V, headers=b.headers)).json()["total_count"] == 1
