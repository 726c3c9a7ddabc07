"""``/api/v1/jobs``: the original design's validation, ownership, listing, cancel."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import seed_videos
from tests.tasks.conftest import MediaFiles
from tests.tasks.support import Caller, new_user, upload_video, wait_for_job, wait_for_video
from vidlib.db.base import utcnow
from vidlib.videos.models import Video

CREATE = "/api/v1/jobs/create"
NEITHER = "Either video_upload_id or s3_video_id must be provided"
BOTH = "Provide either video_upload_id or s3_video_id, not both"


async def ready_video(app: FastAPI, caller: Caller) -> Video:
    """A ready library video (seeded: these tests do not need its bytes)."""
    (video,) = await seed_videos(
        app.state.sessionmaker, caller.id, 1, start=uuid.uuid4().int % 10**6, created_at=utcnow()
    )
    return video


async def create(client: httpx.AsyncClient, caller: Caller, **body: Any) -> httpx.Response:
    return await client.post(CREATE, json=body, headers=caller.headers)


async def transcript(client: httpx.AsyncClient, caller: Caller, text: str, name: str) -> str:
    """Upload a transcript; its id."""
    resp = await client.post(
        "/api/v1/upload/transcript",
        files={"file": (name, text.encode(), "text/plain")},
        headers=caller.headers,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["transcript_upload_id"])


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, NEITHER),
        ({"video_upload_id": "", "s3_video_id": None}, NEITHER),
        ({"transcript_text": "hello"}, NEITHER),
        ({"video_upload_id": str(uuid.uuid4()), "s3_video_id": str(uuid.uuid4())}, BOTH),
    ],
)
async def test_video_reference_rules(
    client: httpx.AsyncClient, caller: Caller, body: dict[str, Any], detail: str
) -> None:
    resp = await client.post(CREATE, json=body, headers=caller.headers)
    assert resp.status_code == 400
    assert resp.json() == {"detail": detail}


async def test_transcript_kind_and_option_rules(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller
) -> None:
    video = str((await ready_video(app, caller)).id)
    both = await create(
        client, caller, s3_video_id=video, transcript_text="hi", transcript_upload_id="x"
    )
    assert both.status_code == 400
    assert both.json() == {
        "detail": "Provide either transcript_text or transcript_upload_id, not both"
    }
    unknown = await create(client, caller, s3_video_id=video, kind="nope")
    assert unknown.status_code == 400
    assert unknown.json()["detail"].startswith("Unknown job kind 'nope'; known kinds: ")
    bad_option = await create(client, caller, s3_video_id=video, options={"max_lines": 9})
    assert bad_option.status_code == 400
    assert bad_option.json() == {
        "detail": "The option max_lines must be a whole number from 1 to 3."
    }
    extra = await create(client, caller, s3_video_id=video, options={"colour": "red"})
    assert extra.status_code == 400
    huge = await create(client, caller, s3_video_id=video, options={"x": "y" * 20000})
    assert huge.status_code == 422
    broken_srt = "1\n00:00:02,000 --> 00:00:01,000\nBackwards\n"
    invalid = await create(client, caller, s3_video_id=video, transcript_text=broken_srt)
    assert invalid.status_code == 422
    assert "ends before it starts" in invalid.json()["detail"]
    malformed = await create(client, caller, s3_video_id="not-a-uuid")
    assert malformed.status_code == 422


async def test_anything_not_the_callers_is_not_found(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    other = await new_user(app)
    theirs = await ready_video(app, other)
    their_upload = await upload_video(client, other, media.webm, "theirs.webm")
    their_transcript = await transcript(client, other, "Their words.", "t.txt")
    mine = await ready_video(app, caller)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"s3_video_id": str(uuid.uuid4())}, "Video not found."),
        ({"s3_video_id": str(theirs.id)}, "Video not found."),
        ({"video_upload_id": "not-an-id"}, "Upload not found."),
        ({"video_upload_id": str(uuid.uuid4())}, "Upload not found."),
        ({"video_upload_id": their_upload["upload_id"]}, "Upload not found."),
        (
            {"s3_video_id": str(mine.id), "transcript_upload_id": their_transcript},
            "Transcript not found.",
        ),
        (
            {"s3_video_id": str(mine.id), "transcript_upload_id": "nope"},
            "Transcript not found.",
        ),
    ]
    for body, detail in cases:
        resp = await create(client, caller, **body)
        assert resp.status_code == 404, (body, resp.text)
        assert resp.json() == {"detail": detail}

    deleted = await client.delete(f"/api/v1/videos/s3-videos/{mine.id}", headers=caller.headers)
    assert deleted.status_code == 204
    gone = await create(client, caller, s3_video_id=str(mine.id))
    assert gone.status_code == 404

    unauthenticated = await client.post(CREATE, json={"s3_video_id": str(mine.id)})
    assert unauthenticated.status_code == 401


async def test_a_deleted_uploads_video_is_not_found(
    client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    body = await upload_video(client, caller, media.mp4, "clip.mp4")
    await client.delete(f"/api/v1/videos/s3-videos/{body['video']['id']}", headers=caller.headers)
    resp = await create(client, caller, video_upload_id=body["upload_id"])
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Upload not found."}


async def test_create_from_an_upload_and_from_the_library(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    uploaded = await upload_video(client, caller, media.mp4, "My Clip.mp4")
    video = uploaded["video"]
    text_id = await transcript(client, caller, "1\n00:00:00,500 --> 00:00:01,500\nHi\n", "a.srt")
    prefix = f"uploads/users/{caller.id}/videos/"
    stored_before = {i.key async for i in app.state.store.list(prefix)}

    from_upload = await create(
        client,
        caller,
        video_upload_id=uploaded["upload_id"],
        title="First",
        transcript_upload_id=text_id,
    )
    assert from_upload.status_code == 201, from_upload.text
    assert from_upload.headers["cache-control"] == "no-store"
    job = from_upload.json()
    assert job["video"] == {"id": video["id"], "s3_key": video["s3_key"], "filename": "my_clip.mp4"}
    assert job["transcript"] == {"source": "upload", "characters": 2}
    assert job["status"] in {"queued", "running", "succeeded"}
    assert job["kind"] == "captions"
    assert job["title"] == "First"
    assert job["options"] == {}
    assert 0 <= job["progress"] <= 1
    assert job["attempts"] >= 0
    assert set(job) >= {"result", "error", "created_at", "updated_at"}
    assert job["created_at"].endswith("Z")

    from_library = await create(
        client, caller, s3_video_id=video["id"], transcript_text="Plain words here."
    )
    assert from_library.status_code == 201
    second = from_library.json()
    assert second["video"]["s3_key"] == video["s3_key"]
    assert second["transcript"] == {"source": "text", "characters": len("Plain words here.")}

    for job_id in (job["id"], second["id"]):
        done = await wait_for_job(client, caller, job_id)
        assert done["status"] == "succeeded", done
    # The library video was reused as stored: no copy of it appeared.
    assert {i.key async for i in app.state.store.list(prefix)} == stored_before


async def test_list_get_and_pagination(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller
) -> None:
    video = str((await ready_video(app, caller)).id)
    ids = [
        (await create(client, caller, s3_video_id=video, title=f"j{n}")).json()["id"]
        for n in range(3)
    ]
    other = await new_user(app)
    their_video = str((await ready_video(app, other)).id)
    theirs = (await create(client, other, s3_video_id=their_video)).json()["id"]
    for job_id in ids:
        await wait_for_job(client, caller, job_id)

    page1 = await client.get("/api/v1/jobs", params={"page_size": 2}, headers=caller.headers)
    assert page1.status_code == 200
    assert page1.headers["cache-control"] == "no-store"
    body = page1.json()
    assert [j["id"] for j in body["jobs"]] == ids[::-1][:2]
    assert {
        k: body[k] for k in ("total_count", "page", "page_size", "total_pages", "has_more")
    } == {
        "total_count": 3,
        "page": 1,
        "page_size": 2,
        "total_pages": 2,
        "has_more": True,
    }
    page2 = (
        await client.get("/api/v1/jobs", params={"page": 2, "page_size": 2}, headers=caller.headers)
    ).json()
    assert [j["id"] for j in page2["jobs"]] == [ids[0]]
    assert page2["has_more"] is False

    succeeded = (
        await client.get("/api/v1/jobs", params={"status": "succeeded"}, headers=caller.headers)
    ).json()
    assert succeeded["total_count"] == 3
    failed = (
        await client.get("/api/v1/jobs", params={"status": "failed"}, headers=caller.headers)
    ).json()
    assert (failed["total_count"], failed["jobs"], failed["total_pages"]) == (0, [], 0)

    for params in ({"page_size": 0}, {"page_size": 51}, {"page": 0}, {"status": "done"}):
        bad = await client.get("/api/v1/jobs", params=params, headers=caller.headers)
        assert bad.status_code == 422, params

    one = await client.get(f"/api/v1/jobs/{ids[0]}", headers=caller.headers)
    assert one.status_code == 200
    assert one.json()["title"] == "j0"
    assert (await client.get(f"/api/v1/jobs/{theirs}", headers=caller.headers)).status_code == 404
    assert (
        await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=caller.headers)
    ).status_code == 404
    assert (await client.get("/api/v1/jobs/nope", headers=caller.headers)).status_code == 422


async def test_cancel(app: FastAPI, client: httpx.AsyncClient, caller: Caller) -> None:
    # A video still processing keeps its job queued (waiting) for a while.
    (pending,) = await seed_videos(
        app.state.sessionmaker, caller.id, 1, status="processing", created_at=utcnow()
    )
    queued = (await create(client, caller, s3_video_id=str(pending.id))).json()
    cancelled = await client.post(f"/api/v1/jobs/{queued['id']}/cancel", headers=caller.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/api/v1/jobs/{queued['id']}/cancel", headers=caller.headers)
    assert again.status_code == 409
    assert again.json() == {
        "detail": "The job has already finished (cancelled); it cannot be cancelled."
    }

    ready = str((await ready_video(app, caller)).id)
    finished = await wait_for_job(
        client, caller, (await create(client, caller, s3_video_id=ready)).json()["id"]
    )
    assert finished["status"] == "succeeded"
    late = await client.post(f"/api/v1/jobs/{finished['id']}/cancel", headers=caller.headers)
    assert late.status_code == 409

    other = await new_user(app)
    theirs = await client.post(f"/api/v1/jobs/{queued['id']}/cancel", headers=other.headers)
    assert theirs.status_code == 404


async def test_media_report_when_there_is_no_transcript(
    client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    uploaded = await upload_video(client, caller, media.webm, "clip.webm")
    video = await wait_for_video(client, caller, uploaded["video"]["id"])
    job = await wait_for_job(
        client, caller, (await create(client, caller, s3_video_id=video["id"])).json()["id"]
    )
    assert job["status"] == "succeeded"
    assert job["progress"] == 1
    assert job["result"] == {"duration": video["duration"], "metadata": video["metadata"]}
    assert job["transcript"] is None
