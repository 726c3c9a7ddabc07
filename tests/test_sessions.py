"""The request's session: reads outside a transaction, writes in one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from fastapi import Request

from vidlib.db.session import (
    create_engine,
    create_read_sessionmaker,
    create_sessionmaker,
    get_session,
)


async def _transaction_times(engine: Any, method: str) -> tuple[datetime, datetime]:
    """``now()`` (the transaction's start time) twice, 20 ms apart, in a session
    ``get_session`` gives a request with ``method``."""
    state = SimpleNamespace(
        sessionmaker=create_sessionmaker(engine), read_sessionmaker=create_read_sessionmaker(engine)
    )
    request = cast(Request, SimpleNamespace(method=method, app=SimpleNamespace(state=state)))
    sessions = cast(AsyncGenerator[Any, None], get_session(request))
    session = await anext(sessions)
    first = (await session.execute(sa.text("SELECT now()"))).scalar_one()
    await asyncio.sleep(0.02)
    second = (await session.execute(sa.text("SELECT now()"))).scalar_one()
    await sessions.aclose()
    return first, second


async def test_reads_run_without_a_transaction_and_writes_in_one(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        for method in ("GET", "HEAD"):
            first, second = await _transaction_times(engine, method)
            assert second > first, f"{method} ran both statements in one transaction"
        for method in ("POST", "PATCH", "PUT", "DELETE"):
            first, second = await _transaction_times(engine, method)
            assert second == first, f"{method} did not run in one transaction"
    finally:
        await engine.dispose()
