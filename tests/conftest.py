"""Test bed: real PostgreSQL, SQLite, SeaweedFS (S3 over HTTP), the local store and Redis.

Contract tests take the ``app``/``client`` fixtures, which are parametrised over
both databases and both storage backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from vidlib.app import create_app
from vidlib.config import Settings
from vidlib.db.migrate import upgrade
from vidlib.db.models import Base

pytest_plugins = ["tests.fixtures.seaweed", "tests.fixtures.background"]

PG_ADMIN_URL = os.environ.get("VIDLIB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# One Redis database per xdist worker (15, 14, ...): each test flushes its own.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_TEST_URL = os.environ.get("VIDLIB_TEST_REDIS", f"redis://127.0.0.1:6379/{15 - _WORKER}")
JWT_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the running PostgreSQL server, migrated, dropped at the end."""
    name = f"vidlib_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_sync_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{url}/{name}"
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _sync_url(url: str) -> str:
    """The synchronous driver URL for fixtures' own housekeeping."""
    for prefix in ("postgresql+asyncpg://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url.replace("sqlite+aiosqlite://", "sqlite://")


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file for the session."""
    path = tmp_path_factory.mktemp("sqlite") / "vidlib.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Which database a contract test runs on."""
    return str(request.param)


@pytest.fixture(params=["local", "s3"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Which object store a contract test runs on."""
    return str(request.param)


@pytest.fixture
def database_url(db_backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The selected database, emptied after the test."""
    url: str = request.getfixturevalue(f"{db_backend}_url")
    yield url
    truncate_all(url)


def truncate_all(url: str) -> None:
    """Empty every table (per-test isolation; the app commits for real)."""
    engine = sa.create_engine(_sync_url(url))
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """This worker's Redis database, flushed before and after the test."""
    client = sync_redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture
def settings(
    database_url: str,
    db_backend: str,
    storage_backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Settings:
    """Settings for one backend combination (PostgreSQL runs use Redis as the cache)."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "storage_backend": storage_backend,
        "jwt_secret": JWT_SECRET,
        "public_url": "http://testserver",
        "log_json": False,
        # Tests register many users from one address; tests/test_ratelimit.py tightens this.
        "rate_limit_auth": "10000/minute",
        # Threads start instantly; tests/tasks covers the process pool.
        "media_executor": "thread",
    }
    if db_backend == "postgres":
        values["redis_url"] = request.getfixturevalue("redis_url")
    if storage_backend == "s3":
        server = request.getfixturevalue("seaweedfs")
        bucket: str = request.getfixturevalue("s3_bucket")
        values.update(
            s3_bucket=bucket,
            s3_endpoint_url=server.endpoint_url,
            s3_region=server.region,
        )
        os.environ["AWS_ACCESS_KEY_ID"] = server.access_key
        os.environ["AWS_SECRET_ACCESS_KEY"] = server.secret_key
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The application with its lifespan running."""
    application = create_app(settings)
    # Generous timeouts: the first S3 test may meet a machine busy starting SeaweedFS.
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=60):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
