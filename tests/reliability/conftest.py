"""Reliability tests: the app against real PostgreSQL, SQLite, SeaweedFS and Redis.

These tests build their own settings (one backend pair each, chosen for what the
test proves) instead of the contract suite's parametrised ``settings``. Storage
faults go through ``tests.fixtures.faults.FaultProxy`` placed between the app and
SeaweedFS.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from tests.conftest import JWT_SECRET, truncate_all
from tests.fixtures.faults import fault_proxy  # noqa: F401 - a fixture for these tests
from tests.fixtures.seaweed import S3Server
from tests.uploads.conftest import TEST_POLICY, pending_multipart, row_counts, stored_keys
from vidlib.app import create_app
from vidlib.config import Settings
from vidlib.storage.base import ObjectStore
from vidlib.uploads.dependencies import get_upload_policy
from vidlib.uploads.maintenance import ReconcileReport, reconcile

# Generous limits: these tests are about faults, not about rate limiting.
UNLIMITED = {
    "rate_limit_auth": "100000/minute",
    "rate_limit_per_user": "100000/minute",
    "rate_limit_per_ip": "100000/minute",
}


def make_settings(
    tmp_path: Path,
    database_url: str,
    *,
    s3: tuple[str, str] | None = None,
    redis_url: str | None = None,
    **extra: Any,
) -> Settings:
    """Settings for one backend pair; ``s3`` is (endpoint URL, bucket)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "storage_backend": "local",
        "jwt_secret": JWT_SECRET,
        "public_url": "http://testserver",
        "log_json": False,
        "redis_url": redis_url,
        **UNLIMITED,
    }
    if s3 is not None:
        endpoint, bucket = s3
        values.update(storage_backend="s3", s3_endpoint_url=endpoint, s3_bucket=bucket)
    values.update(extra)
    return Settings(**values)


def use_s3_credentials(server: S3Server) -> None:
    """The app's S3 client reads its credentials from the environment."""
    os.environ["AWS_ACCESS_KEY_ID"] = server.access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = server.secret_key


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan, small upload parts, and an in-process client."""
    app = create_app(settings)
    app.dependency_overrides[get_upload_policy] = lambda: TEST_POLICY
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[str]:
    """The session's migrated SQLite database, emptied after the test."""
    yield sqlite_url
    truncate_all(sqlite_url)


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """The session's PostgreSQL database, emptied after the test."""
    yield postgres_url
    truncate_all(postgres_url)


async def reconcile_now(app: FastAPI, *, fix: bool = False) -> ReconcileReport:
    """The operator's reconcile, with no grace period: everything counts at once."""
    return await reconcile(
        app.state.sessionmaker,
        app.state.store,
        fix=fix,
        orphan_grace=timedelta(0),
        multipart_grace=timedelta(0),
    )


async def assert_reconcile_clean(app: FastAPI) -> None:
    """``vidlib reconcile`` would find nothing to fix."""
    report = await reconcile_now(app)
    assert report.clean, report


async def storage_state(app: FastAPI) -> tuple[dict[str, int], list[str], list[str]]:
    """Row counts, stored keys and pending multipart uploads: what a fault must not change."""
    store: ObjectStore = app.state.store
    return (await row_counts(app), await stored_keys(store), await pending_multipart(store))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int) -> Iterator[str]:
    """uvicorn serving ``app`` (lifespan on) in a background thread; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start under uvicorn")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
