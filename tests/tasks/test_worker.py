"""The production set-up: the API enqueues into Redis; ``vidlib worker`` processes run
the tasks (media analysis in its memory-capped process pool)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import seed_videos
from tests.tasks.conftest import MediaFiles
from tests.tasks.support import Caller, upload_video, wait_for_job, wait_for_video
from tests.tasks.test_ingest import CASES, assert_ready
from tests.tasks.timing import fast_config
from vidlib.config import Settings
from vidlib.tasks.config import BackgroundConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue_name() -> str:
    """A stream of this test's own."""
    return f"vidlib-test:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def config(redis_url: str, queue_name: str) -> BackgroundConfig:
    """The API side: enqueue into Redis, run nothing."""
    return fast_config(backend="redis", redis_url=redis_url, queue_name=queue_name)


class Worker:
    """One ``vidlib worker`` process (its own process group, killed whole)."""

    def __init__(self, spec: str, log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tasks.worker_main", spec],
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the worker and its media processes, as a crash or the OOM killer would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM: a graceful shutdown; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()
        return self.proc.returncode


@pytest.fixture
def start_worker(
    settings: Settings, redis_url: str, queue_name: str, tmp_path: Path
) -> Iterator[Callable[[], Worker]]:
    """Start worker processes on this test's database, store and queue."""
    values = settings.model_dump(mode="json", exclude={"jwt_secret"})
    assert settings.jwt_secret is not None
    values["jwt_secret"] = settings.jwt_secret.get_secret_value()
    spec = json.dumps(
        {
            "settings": values,
            "config": {
                "backend": "redis",
                "redis_url": redis_url,
                "queue_name": queue_name,
                "media_executor": "process",
                "lease": 2,
                "redelivery_idle": 1,
                "requeue_after": 2,
                "sweep_interval": 0.3,
            },
        }
    )
    workers: list[Worker] = []

    def start() -> Worker:
        worker = Worker(spec, tmp_path / "worker.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        code = worker.stop()
        if worker.proc.returncode != -signal.SIGKILL:
            assert code == 0, worker.log.read_text()[-3000:]


async def running_job(client: httpx.AsyncClient, caller: Caller, video_id: uuid.UUID) -> str:
    """A slow job, returned once a worker is well into it."""
    resp = await client.post(
        "/api/v1/jobs/create",
        json={"s3_video_id": str(video_id), "kind": "slow", "options": {"steps": 20}},
        headers=caller.headers,
    )
    assert resp.status_code == 201, resp.text
    job_id: str = resp.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        job = (await client.get(f"/api/v1/jobs/{job_id}", headers=caller.headers)).json()
        if job["status"] == "running" and job["progress"] > 0.1:
            return job_id
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


# Production (PostgreSQL, S3) and the embedded pair; test_ingest covers all four in-process.
@pytest.mark.parametrize(
    ("db_backend", "storage_backend"), [("postgres", "s3"), ("sqlite", "local")], indirect=True
)
async def test_workers_do_the_work_and_a_killed_one_loses_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    caller: Caller,
    media: MediaFiles,
    start_worker: Callable[[], Worker],
) -> None:
    first = start_worker()
    uploads = {
        name: await upload_video(client, caller, getattr(media, attr), filename)
        for name, (attr, filename, *_rest) in CASES.items()
    }
    broken = await upload_video(client, caller, media.corrupt, "broken.mp4")
    (library_video,) = await seed_videos(app.state.sessionmaker, caller.id, 1)
    job_id = await running_job(client, caller, library_video.id)

    # SIGKILL in the middle of the job (and of whatever ingest is still running).
    first.kill()
    await asyncio.sleep(0.5)
    stalled = (await client.get(f"/api/v1/jobs/{job_id}", headers=caller.headers)).json()
    assert stalled["status"] == "running"
    start_worker()

    done = await wait_for_job(client, caller, job_id, within=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["result"]["attempt"] == 2
    assert done["result"]["files"]["out"]["url"]
    for name, (_attr, _filename, size, codec, rotation) in CASES.items():
        video = await wait_for_video(client, caller, uploads[name]["video"]["id"], within=60)
        await assert_ready(client, video, size, codec, rotation)
    failed = await wait_for_video(client, caller, broken["video"]["id"])
    assert failed["status"] == "failed"
    assert failed["metadata"]["error"] == "The file is not a readable video."
