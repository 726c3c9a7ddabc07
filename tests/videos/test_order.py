"""Every sort field in both orders partitions the library: no repeats, no gaps, even on ties."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.videos.conftest import Seeder
from vidlib.videos.models import Video

LIST = "/api/v1/videos/s3-videos"
FIELDS = ["created_at", "uploaded_at", "filename", "original_filename", "file_size", "duration"]


def _key(video: Video, field: str) -> Any:
    if field in ("created_at", "uploaded_at"):
        return video.created_at
    if field in ("filename", "original_filename"):
        return getattr(video, field).lower()
    if field == "duration":
        return video.duration if video.duration is not None else -1
    return getattr(video, field)


async def _seed_with_ties(seed: Seeder, uid: str) -> list[Video]:
    same_time = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    videos = await seed(uid, 8)
    # Equal sort values on every field, and mixed case for the text sorts.
    videos += await seed(
        uid,
        6,
        created_at=same_time,
        filename="Same.mp4",
        original_filename="SAME clip.mp4",
        file_size=1234,
        duration=None,
        start=100,
    )
    videos += await seed(
        uid,
        4,
        filename="same.mp4",
        original_filename="same CLIP.mp4",
        file_size=1234,
        duration=12.5,
        start=200,
    )
    videos += await seed(uid, 3, filename="apple.mp4", duration=12.5, start=300)
    return videos


async def _walk_pages(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any], page_size: int
) -> list[str]:
    ids: list[str] = []
    page = 1
    while True:
        body = (
            await client.get(
                LIST, params={**params, "page": page, "page_size": page_size}, headers=headers
            )
        ).json()
        ids += [v["id"] for v in body["videos"]]
        if not body["has_more"]:
            return ids
        page += 1


async def _walk_cursor(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any], page_size: int
) -> list[str]:
    ids: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {**params, "page_size": page_size}
        if cursor:
            query["cursor"] = cursor
        body = (await client.get(LIST, params=query, headers=headers)).json()
        pages += 1
        assert body["page"] == pages
        ids += [v["id"] for v in body["videos"]]
        cursor = body["next_cursor"]
        assert (cursor is not None) == body["has_more"]
        if cursor is None:
            return ids


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("field", FIELDS)
async def test_pages_partition_library(
    client: httpx.AsyncClient,
    user: tuple[dict[str, str], str],
    seed: Seeder,
    field: str,
    order: str,
) -> None:
    headers, uid = user
    videos = await _seed_with_ties(seed, uid)
    expected = [
        str(v.id)
        for v in sorted(videos, key=lambda v: (_key(v, field), v.id), reverse=order == "desc")
    ]
    params = {"sort_by": field, "sort_order": order}
    by_page = await _walk_pages(client, headers, params, page_size=4)
    by_cursor = await _walk_cursor(client, headers, params, page_size=4)
    assert by_page == expected
    assert by_cursor == expected
    assert len(set(by_cursor)) == len(videos)


async def test_cursor_survives_inserts_and_deletes(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    videos = await seed(uid, 10)
    first = (await client.get(LIST, params={"page_size": 4}, headers=headers)).json()
    seen = [v["id"] for v in first["videos"]]
    # A newer upload lands before the cursor's position; a later video is deleted.
    await seed(uid, 1, start=500)
    newest_first = sorted(videos, key=lambda v: v.created_at, reverse=True)
    gone = newest_first[6]
    assert (await client.delete(f"{LIST}/{gone.id}", headers=headers)).status_code == 204
    rest = (
        await client.get(
            LIST, params={"page_size": 10, "cursor": first["next_cursor"]}, headers=headers
        )
    ).json()
    # Note: the cursor was issued for page_size 4; reuse with another size is refused.
    assert rest.get("detail")
    rest = (
        await client.get(
            LIST, params={"page_size": 4, "cursor": first["next_cursor"]}, headers=headers
        )
    ).json()
    ids = seen + [v["id"] for v in rest["videos"]]
    assert str(gone.id) not in ids
    assert len(ids) == len(set(ids))
    assert ids == [str(v.id) for v in newest_first if v.id != gone.id][: len(ids)]
    assert uuid.UUID(ids[0])
