"""Fixtures for the object-store contract: one ``store`` per backend, real HTTP servers."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from tests.fixtures.seaweed import S3Server
from vidlib.storage.base import ObjectStore
from vidlib.storage.local import LocalStore
from vidlib.storage.local_router import build_local_storage_router
from vidlib.storage.s3 import S3Store


class SwitchableApp:
    """An ASGI app forwarding to whichever app the current test installed."""

    def __init__(self) -> None:
        self.current: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.current(scope, receive, send)


class LocalServer:
    """uvicorn on a free port in a background thread (its own event loop)."""

    def __init__(self) -> None:
        self.app = SwitchableApp()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the local storage test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def serve(self, store: LocalStore) -> None:
        """Route requests to ``store``'s router, as the app mounts it."""
        app = FastAPI()
        app.include_router(build_local_storage_router(store))
        self.app.current = app


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    """A real HTTP server for local presigned URLs."""
    server = LocalServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def local_store(tmp_path: Path, local_server: LocalServer) -> LocalStore:
    """A LocalStore in a fresh directory, served by ``local_server``."""
    store = LocalStore(tmp_path / "storage", local_server.url, b"test-secret")
    local_server.serve(store)
    return store


@pytest.fixture(scope="session")
def session_bucket(seaweedfs: S3Server, _seaweed_admin: Any) -> str:
    """One bucket for the S3 contract tests (each test works under its own prefix)."""
    name = f"store-{uuid.uuid4().hex[:12]}"
    _seaweed_admin.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
async def s3_store(seaweedfs: S3Server, session_bucket: str) -> AsyncIterator[S3Store]:
    """An S3Store on SeaweedFS, started once per session."""
    store = S3Store(
        session_bucket,
        endpoint_url=seaweedfs.endpoint_url,
        region=seaweedfs.region,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
    )
    await store.start()
    yield store
    await store.close()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """The store under test, for each backend."""
    name = "local_store" if request.param == "local" else "s3_store"
    value: ObjectStore = request.getfixturevalue(name)
    return value


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses (the S3 bucket is shared)."""
    return f"t{uuid.uuid4().hex[:10]}/"
