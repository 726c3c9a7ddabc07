"""Helpers shared by the task and job tests: short timings, the app wired with the
background work, uploads, and waiting for videos and jobs to settle."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
from fastapi import FastAPI

from tests.tasks.timing import fast_config
from tests.uploads.conftest import Caller, chunked, fetch, form, new_user
from vidlib.jobs.router import router as jobs_router
from vidlib.tasks.config import BackgroundConfig
from vidlib.tasks.runtime import Background, start_background
from vidlib.uploads.router import router as uploads_router

__all__ = [
    "Caller",
    "background_app",
    "fast_config",
    "fetch",
    "new_user",
    "upload_video",
    "wait_for_job",
    "wait_for_video",
]

SETTLED_VIDEO = {"ready", "failed"}
FINISHED_JOB = {"succeeded", "failed", "cancelled"}


def _include_routers(app: FastAPI) -> None:
    paths = {getattr(r, "path", "") for r in app.routes}
    if "/api/v1/upload/video" not in paths:
        app.include_router(uploads_router)
    if "/api/v1/jobs/create" not in paths:
        app.include_router(jobs_router)


async def background_app(app: FastAPI, config: BackgroundConfig) -> AsyncIterator[Background]:
    """Wire the app's queues to background work with ``config`` (replacing any the
    app's lifespan started), as the lifespan does in production."""
    _include_routers(app)
    state = app.state
    existing: Background | None = getattr(state, "background", None)
    if existing is not None:
        await existing.aclose(grace=0)
    background = await start_background(
        state.settings, state.sessionmaker, state.store, config=config
    )
    state.background = background
    state.ingest = background.ingest
    state.jobs = background.jobs
    try:
        yield background
    finally:
        await background.aclose(grace=2)


async def upload_video(
    client: httpx.AsyncClient, caller: Caller, path: Path, filename: str | None = None
) -> dict[str, Any]:
    """``POST /api/v1/upload/video`` of a file; the response body."""
    data = await anyio.Path(path).read_bytes()
    body, headers = form(data, filename or path.name)
    resp = await client.post(
        "/api/v1/upload/video", content=chunked(body), headers={**caller.headers, **headers}
    )
    assert resp.status_code in (200, 201), resp.text
    result: dict[str, Any] = resp.json()
    return result


async def _poll(
    client: httpx.AsyncClient, caller: Caller, url: str, done: set[str], within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        resp = await client.get(url, headers=caller.headers)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        if body["status"] in done:
            return body
        assert time.monotonic() < deadline, f"still {body['status']}: {body}"
        await asyncio.sleep(0.05)


async def wait_for_video(
    client: httpx.AsyncClient, caller: Caller, video_id: str | uuid.UUID, within: float = 30
) -> dict[str, Any]:
    """Poll the video until it is ``ready`` or ``failed``."""
    return await _poll(
        client, caller, f"/api/v1/videos/s3-videos/{video_id}", SETTLED_VIDEO, within
    )


async def wait_for_job(
    client: httpx.AsyncClient,
    caller: Caller,
    job_id: str,
    within: float = 30,
    until: set[str] | None = None,
) -> dict[str, Any]:
    """Poll the job until its status is one of ``until`` (default: finished)."""
    return await _poll(client, caller, f"/api/v1/jobs/{job_id}", until or FINISHED_JOB, within)
