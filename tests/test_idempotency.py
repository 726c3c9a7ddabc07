"""``Idempotency-Key``: a retry returns the first result; another body with the key is 422."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import seed_videos
from tests.helpers import auth_headers

LIST = "/api/v1/videos/s3-videos"


@pytest.fixture(params=["local"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """The mechanism is storage-independent."""
    return str(request.param)


async def _user_with_video(app: FastAPI, client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    headers = await auth_headers(client)
    uid = (await client.get("/api/v1/users/me", headers=headers)).json()["id"]
    video = (await seed_videos(app.state.sessionmaker, uuid.UUID(uid), 1))[0]
    return headers, str(video.id)


async def test_retry_replays_first_response(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers, video_id = await _user_with_video(app, client)
    keyed = {**headers, "Idempotency-Key": "rename-1"}
    first = await client.patch(f"{LIST}/{video_id}", json={"filename": "a.mp4"}, headers=keyed)
    assert first.status_code == 200
    # Someone renames it again without a key...
    await client.patch(f"{LIST}/{video_id}", json={"filename": "b.mp4"}, headers=headers)
    # ...and the retry of the first request does not run again: it gets the first answer.
    retry = await client.patch(f"{LIST}/{video_id}", json={"filename": "a.mp4"}, headers=keyed)
    assert retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    current = (await client.get(f"{LIST}/{video_id}", headers=headers)).json()
    assert current["filename"] == "b.mp4"


async def test_same_key_other_body_is_422(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers, video_id = await _user_with_video(app, client)
    keyed = {**headers, "Idempotency-Key": "k"}
    assert (
        await client.patch(f"{LIST}/{video_id}", json={"filename": "a.mp4"}, headers=keyed)
    ).status_code == 200
    other = await client.patch(f"{LIST}/{video_id}", json={"filename": "z.mp4"}, headers=keyed)
    assert other.status_code == 422
    assert "different request" in other.json()["detail"]
    elsewhere = await client.delete(f"{LIST}/{video_id}", headers=keyed)
    assert elsewhere.status_code == 422
    assert (await client.get(f"{LIST}/{video_id}", headers=headers)).status_code == 200


async def test_keys_are_per_user(app: FastAPI, client: httpx.AsyncClient) -> None:
    ann, ann_video = await _user_with_video(app, client)
    bob, bob_video = await _user_with_video(app, client)
    r1 = await client.delete(f"{LIST}/{ann_video}", headers={**ann, "Idempotency-Key": "same"})
    r2 = await client.delete(f"{LIST}/{bob_video}", headers={**bob, "Idempotency-Key": "same"})
    assert (r1.status_code, r2.status_code) == (204, 204)
    assert "idempotent-replayed" not in r2.headers


async def test_errors_are_kept_but_invalid_keys_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers, _ = await _user_with_video(app, client)
    missing = f"{LIST}/{uuid.uuid4()}"
    first = await client.delete(missing, headers={**headers, "Idempotency-Key": "gone"})
    again = await client.delete(missing, headers={**headers, "Idempotency-Key": "gone"})
    assert first.status_code == again.status_code == 404
    assert again.headers["idempotent-replayed"] == "true"
    bad = await client.delete(missing, headers={**headers, "Idempotency-Key": "x" * 256})
    assert bad.status_code == 422
