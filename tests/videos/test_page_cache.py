"""List pages are cached under the owner's library version: repeated reads touch no
rows, and every write shows at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from tests.videos.conftest import Seeder

LIST = "/api/v1/videos/s3-videos"


@pytest.fixture
def video_queries(app: FastAPI) -> Iterator[list[str]]:
    """Statements the app runs that read the videos table."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM videos" in statement:
            seen.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


async def _page(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> Any:
    resp = await client.get(LIST, headers=headers, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _ids(page: Any) -> list[str]:
    return [v["id"] for v in page["videos"]]


async def test_repeated_pages_read_no_rows(
    client: httpx.AsyncClient,
    user: tuple[dict[str, str], str],
    seed: Seeder,
    video_queries: list[str],
) -> None:
    headers, uid = user
    await seed(uid, 25)
    queries: list[dict[str, Any]] = [
        {},
        {"page": 2},
        {"search": "sunset"},
        {"sort_by": "filename", "sort_order": "asc"},
    ]
    first = [await _page(client, headers, **q) for q in queries]
    cursor = first[0]["next_cursor"]
    by_cursor = await _page(client, headers, cursor=cursor)
    read = len(video_queries)
    assert read > 0
    again = [await _page(client, headers, **q) for q in queries]
    assert [_ids(p) for p in again] == [_ids(p) for p in first]
    assert [p["next_cursor"] for p in again] == [p["next_cursor"] for p in first]
    assert _ids(await _page(client, headers, cursor=cursor)) == _ids(by_cursor)
    assert len(video_queries) == read, video_queries[read:]
    # Different queries are different entries: page 3 is read.
    assert _ids(await _page(client, headers, page=3)) not in [_ids(p) for p in first]
    assert len(video_queries) > read


async def test_every_write_shows_at_once(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    headers, uid = user
    await seed(uid, 25)
    first = await _page(client, headers)
    cursor = first["next_cursor"]
    second = await _page(client, headers, cursor=cursor)
    top, other = first["videos"][0]["id"], second["videos"][0]["id"]
    # Rename: the cached page 1 and the page behind the cursor both change.
    resp = await client.patch(f"{LIST}/{top}", headers=headers, json={"filename": "renamed.mp4"})
    assert resp.status_code == 200
    assert (await _page(client, headers))["videos"][0]["filename"] == "renamed.mp4"
    await client.patch(f"{LIST}/{other}", headers=headers, json={"filename": "also.mp4"})
    assert (await _page(client, headers, cursor=cursor))["videos"][0]["filename"] == "also.mp4"
    # Delete: gone from the page, counted out of the total.
    assert (await client.delete(f"{LIST}/{top}", headers=headers)).status_code == 204
    after = await _page(client, headers)
    assert top not in _ids(after)
    assert after["total_count"] == first["total_count"] - 1
    # Restore: back on top.
    assert (await client.post(f"{LIST}/{top}/restore", headers=headers)).status_code == 200
    restored = await _page(client, headers)
    assert _ids(restored)[0] == top
    assert restored["total_count"] == first["total_count"]
    # A new video (inserted as ingest would) is listed first.
    fresh = await seed(uid, 1, start=999)
    assert _ids(await _page(client, headers))[0] == str(fresh[0].id)


async def test_pages_are_per_user(
    client: httpx.AsyncClient, user: tuple[dict[str, str], str], seed: Seeder
) -> None:
    from tests.helpers import auth_headers
    from tests.videos.conftest import me

    headers, uid = user
    other = await auth_headers(client)
    other_id = await me(client, other)
    await seed(uid, 3)
    await seed(other_id, 2, start=100)
    mine, theirs = await _page(client, headers), await _page(client, other)
    assert mine["total_count"] == 3
    assert theirs["total_count"] == 2
    assert not set(_ids(mine)) & set(_ids(theirs))
