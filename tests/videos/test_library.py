"""Search, one video, rename, soft delete, restore, purge and isolation between users."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import auth_headers
from tests.videos.conftest import Seeder, me
from vidlib.videos.service import purge_deleted

LIST = "/api/v1/videos/s3-videos"


async def _ids(client: httpx.AsyncClient, headers: dict[str, str], **params: object) -> list[str]:
    body = (await client.get(LIST, params={"page_size": 50, **params}, headers=headers)).json()
    return [v["id"] for v in body["videos"]]


async def test_search_is_case_insensitive_substring_of_both_names(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    a = (await seed(uid, 1, filename="Holiday_Beach.mp4", original_filename="x.mp4"))[0]
    b = (await seed(uid, 1, filename="clip.mp4", original_filename="My BEACH day.mov", start=10))[0]
    await seed(uid, 3, filename="other.mp4", original_filename="other.mp4", start=20)
    found = await _ids(client, headers, search="beach")
    assert sorted(found) == sorted([str(a.id), str(b.id)])
    body = (await client.get(LIST, params={"search": "BeAcH"}, headers=headers)).json()
    assert body["total_count"] == 2
    assert (await client.get(LIST, params={"search": "zzz"}, headers=headers)).json()[
        "total_count"
    ] == 0


@pytest.mark.parametrize("term", ["%", "_", "\\", "50%_off"])
async def test_search_wildcards_are_literal(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder, term: str
) -> None:
    headers, uid = user
    hit = (await seed(uid, 1, filename="sale 50%_off \\ today.mp4", original_filename="a.mp4"))[0]
    await seed(uid, 4, filename="sale 50 off.mp4", original_filename="b.mp4", start=10)
    await seed(uid, 2, filename="abc.mp4", original_filename="c.mp4", start=20)
    assert await _ids(client, headers, search=term) == [str(hit.id)]


async def test_search_count_follows_writes(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    videos = await seed(uid, 3, filename="cat.mp4")
    assert (await client.get(LIST, params={"search": "cat"}, headers=headers)).json()[
        "total_count"
    ] == 3
    await client.delete(f"{LIST}/{videos[0].id}", headers=headers)
    assert (await client.get(LIST, params={"search": "cat"}, headers=headers)).json()[
        "total_count"
    ] == 2
    await seed(uid, 2, filename="cat.mp4", start=50)
    assert (await client.get(LIST, params={"search": "cat"}, headers=headers)).json()[
        "total_count"
    ] == 4


async def test_get_by_id_and_key(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    video = (await seed(uid, 1))[0]
    by_id = await client.get(f"{LIST}/{video.id}", headers=headers)
    assert by_id.status_code == 200
    assert by_id.headers["cache-control"] == "no-store"
    by_key = await client.get(f"{LIST}/by-key/{video.s3_key}", headers=headers)
    assert by_key.status_code == 200
    assert by_key.json()["id"] == by_id.json()["id"] == str(video.id)
    assert by_key.json()["s3_key"] == video.s3_key
    assert "/" in video.s3_key


async def test_patch_renames_and_merges_user_metadata(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    video = (await seed(uid, 1))[0]
    resp = await client.patch(
        f"{LIST}/{video.id}",
        headers=headers,
        json={"filename": "Renamed.mp4", "metadata": {"tag": "x"}},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["filename"] == "Renamed.mp4"
    assert body["metadata"]["tag"] == "x"
    assert body["metadata"]["codec"] == "h264"
    assert body["s3_key"] == video.s3_key
    resp = await client.patch(
        f"{LIST}/{video.id}", headers=headers, json={"metadata": {"tag": None, "album": "2025"}}
    )
    assert resp.json()["metadata"].get("tag") is None
    assert resp.json()["metadata"]["album"] == "2025"
    for bad in (
        {"metadata": {"codec": "evil"}},
        {"filename": ""},
        {"filename": "a/b.mp4"},
        {"filename": "x" * 256},
        {"filename": "a\x00b"},
        {"s3_key": "x"},
        {"metadata": {"": 1}},
    ):
        r = await client.patch(f"{LIST}/{video.id}", headers=headers, json=bad)
        assert r.status_code == 422, bad
    # A rename shows at once in the recent list and in searches.
    recent = (await client.get(f"{LIST}/recent", headers=headers)).json()["videos"]
    assert recent[0]["filename"] == "Renamed.mp4"
    assert await _ids(client, headers, search="renamed") == [str(video.id)]


async def test_soft_delete_restore_and_purge(
    app: FastAPI, client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    videos = await seed(uid, 3)
    target = max(videos, key=lambda v: v.created_at)
    assert (await client.get(f"{LIST}/recent", headers=headers)).json()["videos"][0]["id"] == str(
        target.id
    )
    assert (await client.delete(f"{LIST}/{target.id}", headers=headers)).status_code == 204
    # Gone from every read at once.
    assert str(target.id) not in await _ids(client, headers)
    assert str(target.id) not in [
        v["id"] for v in (await client.get(f"{LIST}/recent", headers=headers)).json()["videos"]
    ]
    assert (await client.get(f"{LIST}/{target.id}", headers=headers)).status_code == 404
    assert (await client.get(f"{LIST}/by-key/{target.s3_key}", headers=headers)).status_code == 404
    assert (await client.get(LIST, headers=headers)).json()["total_count"] == 2
    assert (await client.delete(f"{LIST}/{target.id}", headers=headers)).status_code == 404
    # Restore brings it back everywhere, and is idempotent.
    restored = await client.post(f"{LIST}/{target.id}/restore", headers=headers)
    assert restored.status_code == 200
    assert restored.json()["id"] == str(target.id)
    assert (await client.post(f"{LIST}/{target.id}/restore", headers=headers)).status_code == 200
    assert (await client.get(LIST, headers=headers)).json()["total_count"] == 3
    assert (await client.get(f"{LIST}/recent", headers=headers)).json()["videos"][0]["id"] == str(
        target.id
    )
    # Purge removes deleted rows past retention only.
    await client.delete(f"{LIST}/{target.id}", headers=headers)
    kept = await purge_deleted(
        app.state.sessionmaker, app.state.store, older_than=timedelta(days=30)
    )
    assert kept == 0
    assert (await client.post(f"{LIST}/{target.id}/restore", headers=headers)).status_code == 200
    await client.delete(f"{LIST}/{target.id}", headers=headers)
    purged = await purge_deleted(app.state.sessionmaker, app.state.store, older_than=timedelta(0))
    assert purged == 1
    assert (await client.post(f"{LIST}/{target.id}/restore", headers=headers)).status_code == 404
    assert (await client.get(LIST, headers=headers)).json()["total_count"] == 2


async def test_restore_conflicts_with_identical_live_copy(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    old = (await seed(uid, 1, sha256="a" * 64))[0]
    await client.delete(f"{LIST}/{old.id}", headers=headers)
    await seed(uid, 1, sha256="a" * 64, start=5)
    resp = await client.post(f"{LIST}/{old.id}/restore", headers=headers)
    assert resp.status_code == 409
    assert (await client.get(LIST, headers=headers)).json()["total_count"] == 1


async def test_other_users_videos_are_404_everywhere(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    owner_headers, owner_id = user
    video = (await seed(owner_id, 1, filename="secret.mp4"))[0]
    intruder = await auth_headers(client)
    calls = [
        ("GET", f"{LIST}/{video.id}", None),
        ("GET", f"{LIST}/by-key/{video.s3_key}", None),
        ("PATCH", f"{LIST}/{video.id}", {"filename": "mine.mp4"}),
        ("DELETE", f"{LIST}/{video.id}", None),
        ("POST", f"{LIST}/{video.id}/restore", None),
    ]
    for method, path, body in calls:
        resp = await client.request(method, path, json=body, headers=intruder)
        assert resp.status_code == 404, (method, path)
        assert resp.json() == {"detail": "Video not found."}
    assert await _ids(client, intruder) == []
    assert await _ids(client, intruder, search="secret") == []
    assert (await client.get(f"{LIST}/recent", headers=intruder)).json()["videos"] == []
    # Nothing changed for the owner.
    owner_view = (await client.get(f"{LIST}/{video.id}", headers=owner_headers)).json()
    assert owner_view["filename"] == "secret.mp4"
    # Deleted by its owner, a video is 404 to the intruder's restore too.
    await client.delete(f"{LIST}/{video.id}", headers=owner_headers)
    resp = await client.post(f"{LIST}/{video.id}/restore", headers=intruder)
    assert resp.status_code == 404
    assert await me(client, owner_headers) == owner_id
