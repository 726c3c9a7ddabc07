"""Engine and the one-session-per-request dependency."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine with settings suited to the backend."""
    if url.startswith("sqlite"):
        kwargs.pop("pool_size", None)
        kwargs.pop("max_overflow", None)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers run beside the single writer; foreign keys are off by default.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 10)
    # Recycling instead of a pre-ping: a ping is one more round trip on every request.
    kwargs.setdefault("pool_recycle", 1800)
    if url.startswith("postgresql+asyncpg"):
        # Custom plans every time: after five executions PostgreSQL may switch a prepared
        # statement to a generic plan, which for a search (the term is a parameter) scans
        # every trigram match of the user and sorts (43 ms instead of 0.3 ms).
        kwargs.setdefault(
            "connect_args", {"server_settings": {"plan_cache_mode": "force_custom_plan"}}
        )
    return create_async_engine(url, **kwargs)


def create_sessionmaker(
    engine: AsyncEngine, *, on_account_change: Callable[[uuid.UUID], None] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit.

    ``on_account_change`` is called, right after a commit, for each user whose row the
    committed transaction changed (see :func:`account_changed`).
    """
    info = {ON_ACCOUNT_CHANGE: on_account_change} if on_account_change else None
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for requests that only read: each statement runs on its own, outside an
    explicit transaction, so a read costs no BEGIN and COMMIT round trips. (PostgreSQL's
    default READ COMMITTED already gives every statement its own snapshot, so what a
    request sees does not change.)"""
    return create_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


# Methods that never write (the API's GET handlers only read).
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


# session.info keys: users whose row the current transaction changed, and whom to tell.
CHANGED_ACCOUNTS = "changed_accounts"
ON_ACCOUNT_CHANGE = "on_account_change"


def account_changed(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Note that this session changed a user's row: once it commits, the sessionmaker's
    ``on_account_change`` hears of it (the API drops its in-memory snapshot of that
    user there and then; other processes hear of it from PostgreSQL)."""
    session.info.setdefault(CHANGED_ACCOUNTS, set()).add(user_id)


@event.listens_for(Session, "after_commit")
def _tell_account_changes(session: Session) -> None:
    changed = session.info.pop(CHANGED_ACCOUNTS, None)
    notify = session.info.get(ON_ACCOUNT_CHANGE)
    if changed and notify is not None:
        for user_id in changed:
            notify(user_id)


@event.listens_for(Session, "after_rollback")
def _forget_account_changes(session: Session) -> None:
    session.info.pop(CHANGED_ACCOUNTS, None)


def after_commit(session: AsyncSession, hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``hook`` once the request's transaction has committed (never if it rolls back)."""
    session.info.setdefault("after_commit", []).append(hook)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the handler succeeds, rolled back otherwise."""
    state = request.app.state
    maker: async_sessionmaker[AsyncSession] = (
        state.read_sessionmaker if request.method in READ_ONLY_METHODS else state.sessionmaker
    )
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()
            # Work queued during the request runs only once its rows are committed.
            hooks = session.info.pop("after_commit", [])
            for hook in hooks:
                await hook()


# "function" scope: commit before the response is sent, so a 2xx means the rows are durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
