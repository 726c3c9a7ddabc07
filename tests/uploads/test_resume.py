"""A direct multipart upload survives an app restart: resume from nothing but the upload id."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.uploads.conftest import Caller, fetch, mp4_bytes, new_user, pending_multipart, put
from vidlib.storage.base import MIB, ObjectStore

URL = "/api/v1/upload/video/direct"


async def test_resume_after_restart(app: FastAPI, store: ObjectStore, user: Caller) -> None:
    data = mp4_bytes(14 * MIB)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as first:
        created = await first.post(
            URL,
            json={"filename": "long.mp4", "content_type": "video/mp4", "file_size": len(data)},
            headers=user.headers,
        )
        assert created.status_code == 201, created.text
        session = created.json()
        upload_id, part_size = session["upload_id"], session["part_size"]
        assert session["part_count"] == 3
        # Half the upload goes through; then the app is killed.
        part1 = session["parts"][0]
        assert part1["part_number"] == 1
        assert (await put(first, part1["url"], data[:part_size])).status_code == 200

    # A new client that kept only the upload id (and logs in again).
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as again:
        state = await again.get(f"{URL}/{upload_id}", headers=user.headers)
        assert state.status_code == 200
        body = state.json()
        assert body["status"] == "pending"
        assert (body["file_size"], body["part_size"]) == (len(data), part_size)
        held = {p["part_number"] for p in body["parts"]}
        assert held == {1}
        missing = [n for n in range(1, 4) if n not in held]
        fresh = await again.post(
            f"{URL}/{upload_id}/parts", json={"part_numbers": missing}, headers=user.headers
        )
        assert fresh.status_code == 200
        for part in fresh.json()["parts"]:
            n = part["part_number"]
            chunk = data[(n - 1) * part_size : n * part_size]
            assert (await put(again, part["url"], chunk)).status_code == 200
        # Complete without a parts list: the server assembles it from storage.
        done = await again.post(f"{URL}/{upload_id}/complete", headers=user.headers)
        assert done.status_code == 201, done.text
        video = done.json()["video"]
        assert (await fetch(again, video["s3_url"])).content == data
        assert (await again.get(f"{URL}/{upload_id}", headers=user.headers)).json()[
            "status"
        ] == "completed"
    assert await pending_multipart(store) == []


async def test_session_is_owners_only_and_abort_leaves_nothing(
    app: FastAPI, client: httpx.AsyncClient, store: ObjectStore, user: Caller
) -> None:
    data = mp4_bytes(12 * MIB)
    session = (
        await client.post(
            URL,
            json={"filename": "a.mp4", "content_type": "video/mp4", "file_size": len(data)},
            headers=user.headers,
        )
    ).json()
    upload_id = session["upload_id"]
    await put(client, session["parts"][0]["url"], data[: session["part_size"]])
    other = await new_user(app)
    for method, path, body in [
        ("GET", f"{URL}/{upload_id}", None),
        ("POST", f"{URL}/{upload_id}/parts", {"part_numbers": [2]}),
        ("POST", f"{URL}/{upload_id}/complete", None),
        ("DELETE", f"{URL}/{upload_id}", None),
    ]:
        resp = await client.request(method, path, json=body, headers=other.headers)
        assert resp.status_code == 404, (method, path)
    assert (await client.delete(f"{URL}/{upload_id}", headers=user.headers)).status_code == 204
    assert await pending_multipart(store) == []
    state = (await client.get(f"{URL}/{upload_id}", headers=user.headers)).json()
    assert (state["status"], state["parts"]) == ("aborted", [])
