"""A job that waited for its video runs as soon as the video is processed, not when its
wait would have run out."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.tasks.conftest import MediaFiles
from tests.tasks.support import Caller, wait_for_job, wait_for_video
from tests.tasks.test_recovery import stored_video
from tests.tasks.timing import fast_config
from vidlib.tasks.config import BackgroundConfig

CREATE = "/api/v1/jobs/create"
WAIT = timedelta(seconds=120)


@pytest.fixture
def config() -> BackgroundConfig:
    """Jobs postponed for a long time while their video is processed."""
    return fast_config(video_wait=WAIT)


async def test_a_waiting_job_runs_when_its_video_is_done(
    app: FastAPI, client: httpx.AsyncClient, caller: Caller, media: MediaFiles
) -> None:
    # Stored but not queued: the sweeper processes it shortly, after the job exists.
    video_id = await stored_video(
        app.state.sessionmaker, app.state.store, caller.id, media.mp4, age=timedelta(0)
    )
    started = time.monotonic()
    resp = await client.post(
        CREATE,
        json={"s3_video_id": str(video_id), "transcript_text": "Short."},
        headers=caller.headers,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["status"] == "queued"
    await wait_for_video(client, caller, video_id)
    job = await wait_for_job(client, caller, resp.json()["id"], within=20)
    assert job["status"] == "succeeded"
    assert time.monotonic() - started < WAIT.total_seconds() / 4
