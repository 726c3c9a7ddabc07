"""Account snapshots in memory: exact through PostgreSQL notifications, off otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from tests.helpers import auth_headers
from vidlib.app import create_app
from vidlib.auth.accounts import APPLICATION_NAME, AccountCache, AccountChanges
from vidlib.auth.models import Account
from vidlib.auth.tokens import InvalidToken, JWTService
from vidlib.config import Settings
from vidlib.db.session import create_engine, create_sessionmaker
from vidlib.videos.repository import VideoRepository

ME = "/api/v1/users/me"


def _account(user_id: uuid.UUID | None = None, version: int = 0) -> Account:
    return Account(
        id=user_id or uuid.uuid4(),
        email="a@example.com",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        video_count=0,
        library_version=version,
    )


# --- the cache on its own ------------------------------------------------------------


def test_cache_serves_nothing_until_enabled() -> None:
    cache = AccountCache()
    account = _account()
    cache.put(account, cache.generation)
    assert cache.get(account.id) is None
    assert len(cache) == 0
    cache.enable()
    cache.put(account, cache.generation)
    assert cache.get(account.id) == account
    cache.disable()
    assert cache.get(account.id) is None
    assert len(cache) == 0


def test_a_load_spanning_an_invalidation_is_not_stored() -> None:
    cache = AccountCache()
    cache.enable()
    stale = _account(version=1)
    generation = cache.generation  # read before the database query
    cache.invalidate(stale.id)  # the row changes while the query runs
    cache.put(stale, generation)
    assert cache.get(stale.id) is None
    cache.put(stale, cache.generation)
    assert cache.get(stale.id) == stale


def test_invalidate_drops_only_that_user() -> None:
    cache = AccountCache()
    cache.enable()
    one, two = _account(), _account()
    cache.put(one, cache.generation)
    cache.put(two, cache.generation)
    cache.invalidate(one.id)
    assert cache.get(one.id) is None
    assert cache.get(two.id) == two


def test_entries_expire_and_the_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = AccountCache(max_entries=3, ttl_seconds=60)
    cache.enable()
    accounts = [_account() for _ in range(5)]
    for a in accounts:
        cache.put(a, cache.generation)
    assert len(cache) == 3
    assert cache.get(accounts[0].id) is None
    assert cache.get(accounts[4].id) == accounts[4]
    later = time.monotonic() + 61
    monkeypatch.setattr("vidlib.auth.accounts.time.monotonic", lambda: later)
    assert cache.get(accounts[4].id) is None


# --- verified tokens -----------------------------------------------------------------


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    service = JWTService("s" * 40, ttl_seconds=60)
    user_id = uuid.uuid4()
    token = service.issue(user_id).token
    assert service.verify(token).user_id == user_id
    assert service.verify(token).user_id == user_id  # from memory
    later = time.time() + 120
    monkeypatch.setattr("vidlib.auth.tokens.time.time", lambda: later)
    monkeypatch.setattr("jwt.api_jwt.datetime", _FrozenDatetime(later))
    with pytest.raises(InvalidToken):
        service.verify(token)


def test_a_bad_token_is_never_remembered() -> None:
    service = JWTService("s" * 40, ttl_seconds=60)
    token = service.issue(uuid.uuid4()).token
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            service.verify(forged)
    other = JWTService("t" * 40, ttl_seconds=60)
    with pytest.raises(InvalidToken):
        other.verify(token)


class _FrozenDatetime:
    """Stands in for ``datetime`` inside PyJWT so its expiry check sees ``at``."""

    def __init__(self, at: float) -> None:
        self._at = at

    def now(self, tz: object = None) -> datetime:
        return datetime.fromtimestamp(self._at, tz=UTC)

    def __getattr__(self, name: str) -> object:
        return getattr(datetime, name)


# --- in the application --------------------------------------------------------------


@pytest.fixture(params=["local"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Storage plays no part here."""
    return str(request.param)


async def _until(check: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def _sql(database_url: str, statement: str, **params: object) -> None:
    """Run one statement on a connection of its own (another process, as far as the
    application can tell)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(statement), params)
    finally:
        await engine.dispose()


SignedIn = tuple[AccountCache, dict[str, str], uuid.UUID]


@pytest.fixture
async def signed_in(app: FastAPI, client: httpx.AsyncClient) -> SignedIn:
    """The app's account cache, and a user who has made one request (so is cached)."""
    cache: AccountCache = app.state.accounts
    headers = await auth_headers(client)
    user_id = uuid.UUID((await client.get(ME, headers=headers)).json()["id"])
    return cache, headers, user_id


@pytest.mark.parametrize("db_backend", ["postgres"], indirect=True)
async def test_snapshot_dropped_when_the_row_changes_elsewhere(
    client: httpx.AsyncClient, database_url: str, signed_in: SignedIn
) -> None:
    cache, headers, user_id = signed_in
    assert cache.enabled
    assert cache.get(user_id) is not None, "the snapshot was not kept"
    # Another process changes the row: the snapshot goes, the next read sees the change.
    await _sql(
        database_url, "UPDATE users SET email = 'moved@example.com' WHERE id = :id", id=user_id
    )
    await _until(lambda: cache.get(user_id) is None, "the change was heard")
    assert (await client.get(ME, headers=headers)).json()["email"] == "moved@example.com"
    # A deleted user's valid token stops working.
    await _sql(database_url, "DELETE FROM users WHERE id = :id", id=user_id)
    await _until(lambda: cache.get(user_id) is None, "the delete was heard")
    assert (await client.get(ME, headers=headers)).status_code == 401


@pytest.mark.parametrize("db_backend", ["postgres"], indirect=True)
async def test_truncate_forgets_everyone(
    client: httpx.AsyncClient, database_url: str, signed_in: SignedIn
) -> None:
    cache, headers, _ = signed_in
    assert len(cache) == 1
    await _sql(database_url, "TRUNCATE users CASCADE")
    await _until(lambda: len(cache) == 0, "the truncate was heard")
    assert (await client.get(ME, headers=headers)).status_code == 401


@pytest.mark.parametrize("db_backend", ["postgres"], indirect=True)
async def test_cache_off_while_the_listener_is_down(
    client: httpx.AsyncClient, database_url: str, signed_in: SignedIn
) -> None:
    cache, headers, user_id = signed_in
    assert cache.get(user_id) is not None
    await _sql(
        database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = :name AND datname = current_database()",
        name=APPLICATION_NAME,
    )
    await _until(lambda: not cache.enabled, "the cache was turned off")
    assert len(cache) == 0
    # Requests still work meanwhile (from the database), and the listener comes back.
    assert (await client.get(ME, headers=headers)).status_code == 200
    await _until(lambda: cache.enabled, "the listener reconnected", within=10)
    await client.get(ME, headers=headers)
    assert cache.get(user_id) is not None


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
async def test_sqlite_never_caches(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await auth_headers(client)
    assert (await client.get(ME, headers=headers)).status_code == 200
    assert not app.state.accounts.enabled
    assert len(app.state.accounts) == 0


async def test_a_commit_drops_the_snapshot_itself(sqlite_url: str) -> None:
    """Any session of the app's sessionmaker (requests, uploads, in-process tasks)
    drops the snapshot of a user whose library it changed, at commit, without waiting
    for a notification; a rolled-back change drops nothing."""
    cache = AccountCache()
    cache.enable()
    engine = create_engine(sqlite_url)
    sessions = create_sessionmaker(engine, on_account_change=cache.invalidate)
    account = _account()
    try:
        cache.put(account, cache.generation)
        with contextlib.suppress(RuntimeError):
            async with sessions() as session, session.begin():
                await VideoRepository(session).touch_library(account.id)
                raise RuntimeError("roll back")
        assert cache.get(account.id) == account
        async with sessions() as session, session.begin():
            await VideoRepository(session).touch_library(account.id)
        assert cache.get(account.id) is None
    finally:
        await engine.dispose()


@pytest.mark.parametrize("db_backend", ["postgres"], indirect=True)
async def test_a_failed_start_leaves_no_listener_behind(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("background work cannot start")

    monkeypatch.setattr("vidlib.app.start_background", broken)
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="cannot start"):
        async with LifespanManager(app):
            pass
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            listeners = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": APPLICATION_NAME},
            )
    finally:
        await engine.dispose()
    assert listeners == 0


class _Deaf(AccountChanges):
    """A listener whose notifications never arrive (LISTEN accepted, nothing delivered,
    as behind a proxy that pools connections by transaction)."""

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        return


async def test_the_cache_stays_off_when_notifications_do_not_come_back(
    postgres_url: str,
) -> None:
    cache = AccountCache()
    changes = _Deaf(postgres_url, cache, heartbeat_seconds=0.2)
    try:
        await changes.start()
        await asyncio.sleep(0.5)
        assert not cache.enabled
    finally:
        await changes.aclose()
    live = AccountCache()
    heard = AccountChanges(postgres_url, live, heartbeat_seconds=0.2)
    try:
        await heard.start()
        assert live.enabled  # the same set-up with notifications arriving turns it on
    finally:
        await heard.aclose()
