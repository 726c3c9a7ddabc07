"""Every parameter's bounds and every 422 of the library endpoints."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.videos.conftest import Seeder

LIST = "/api/v1/videos/s3-videos"


@pytest.mark.parametrize(
    "query",
    [
        {"page": 0},
        {"page": -1},
        {"page": "x"},
        {"page_size": 0},
        {"page_size": 51},
        {"search": "x" * 201},
        {"sort_by": "user_id"},
        {"sort_by": "__class__"},
        {"sort_by": "deleted_at"},
        {"sort_order": "up"},
        {"sort_order": ""},
        {"cursor": "garbage"},
        {"cursor": "x" * 2000},
    ],
)
async def test_list_rejects(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], query: dict[str, object]
) -> None:
    headers, _ = user
    resp = await client.get(LIST, params=query, headers=headers)
    assert resp.status_code == 422, resp.text
    assert "detail" in resp.json()


@pytest.mark.parametrize(
    "query",
    [
        {"page": 1},
        {"page_size": 1},
        {"page_size": 50},
        {"search": "x" * 200},
        {"sort_order": "ASC"},
        {"sort_order": "Desc"},
        {"sort_by": "uploaded_at"},
        {"search": ""},
    ],
)
async def test_list_accepts(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], query: dict[str, object]
) -> None:
    headers, _ = user
    resp = await client.get(LIST, params=query, headers=headers)
    assert resp.status_code == 200, resp.text


async def test_list_envelope_and_defaults(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    empty = (await client.get(LIST, headers=headers)).json()
    assert empty == {
        "videos": [],
        "total_count": 0,
        "page": 1,
        "page_size": 10,
        "total_pages": 0,
        "has_more": False,
        "next_cursor": None,
    }
    await seed(uid, 25)
    resp = await client.get(LIST, headers=headers)
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert (body["total_count"], body["page"], body["page_size"]) == (25, 1, 10)
    assert (body["total_pages"], body["has_more"]) == (3, True)
    assert body["next_cursor"]
    video = body["videos"][0]
    assert set(video) >= {
        "id",
        "filename",
        "original_filename",
        "s3_key",
        "s3_url",
        "content_type",
        "file_size",
        "duration",
        "thumbnail_url",
        "uploaded_at",
        "metadata",
        "status",
    }
    assert isinstance(video["duration"], float)
    assert video["uploaded_at"].endswith("Z")
    last = (await client.get(LIST, params={"page": 3}, headers=headers)).json()
    assert (len(last["videos"]), last["has_more"], last["next_cursor"]) == (5, False, None)
    beyond = (await client.get(LIST, params={"page": 4}, headers=headers)).json()
    assert (beyond["videos"], beyond["has_more"]) == ([], False)


@pytest.mark.parametrize("limit", [0, 21, -5, "x"])
async def test_recent_rejects(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], limit: object
) -> None:
    headers, _ = user
    resp = await client.get(f"{LIST}/recent", params={"limit": limit}, headers=headers)
    assert resp.status_code == 422


async def test_recent_bounds_and_order(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    videos = await seed(uid, 25)
    newest = sorted(videos, key=lambda v: v.created_at, reverse=True)
    default = (await client.get(f"{LIST}/recent", headers=headers)).json()["videos"]
    assert [v["id"] for v in default] == [str(v.id) for v in newest[:5]]
    for limit in (1, 20):
        got = await client.get(f"{LIST}/recent", params={"limit": limit}, headers=headers)
        assert len(got.json()["videos"]) == limit


async def test_cursor_bound_to_its_query(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    await seed(uid, 12)
    first = (await client.get(LIST, params={"page_size": 5}, headers=headers)).json()
    cursor = first["next_cursor"]
    ok = await client.get(LIST, params={"page_size": 5, "cursor": cursor}, headers=headers)
    assert ok.status_code == 200
    assert ok.json()["page"] == 2
    for other in (
        {"sort_by": "filename"},
        {"sort_order": "asc"},
        {"search": "cat"},
        {"page_size": 6},
    ):
        resp = await client.get(
            LIST, params={"page_size": 5, "cursor": cursor, **other}, headers=headers
        )
        assert resp.status_code == 422, other
        assert resp.json()["detail"] == "The cursor is invalid or does not belong to this query."
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    resp = await client.get(LIST, params={"page_size": 5, "cursor": tampered}, headers=headers)
    assert resp.status_code == 422
    # Another user's cursor is not valid for this user.
    from tests.helpers import auth_headers

    other_headers = await auth_headers(client)
    resp = await client.get(LIST, params={"page_size": 5, "cursor": cursor}, headers=other_headers)
    assert resp.status_code == 422


async def test_bad_ids_are_422_and_unknown_are_404(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str]
) -> None:
    headers, _ = user
    assert (await client.get(f"{LIST}/not-a-uuid", headers=headers)).status_code == 422
    missing = await client.get(f"{LIST}/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Video not found."}
    assert (await client.get(f"{LIST}/by-key/uploads/nope.mp4", headers=headers)).status_code == 404


async def test_requires_auth(client: httpx.AsyncClient) -> None:
    for path in (LIST, f"{LIST}/recent", f"{LIST}/{uuid.uuid4()}", f"{LIST}/by-key/a/b"):
        resp = await client.get(path)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == "Bearer"
