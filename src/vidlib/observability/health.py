"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

log = logging.getLogger("vidlib.health")
router = APIRouter(tags=["operations"])
CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


async def _probe(name: str, check: Callable[[], Awaitable[object]]) -> str | None:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure means "not ready"; the reason goes to logs
        log.warning("readiness check failed: %s (%s)", name, type(exc).__name__)
        return name
    return None


@router.get("/readyz", responses={503: {"description": "A dependency is down"}})
async def readyz(request: Request) -> JSONResponse:
    """Database, storage and (when configured) cache and queue reachable: 200, else 503."""
    state = request.app.state

    async def database() -> None:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    checks: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("database", database),
        ("storage", state.store.check),
    ]
    if state.settings.redis_url:
        checks.append(("cache", state.cache.check))
    if state.background.config.backend == "redis":
        checks.append(("queue", state.background.check))
    failed = [n for n in await asyncio.gather(*(_probe(n, c) for n, c in checks)) if n]
    if failed:
        return JSONResponse(
            {"detail": f"Not ready: {', '.join(failed)} unreachable.", "down": failed},
            status_code=503,
        )
    return JSONResponse({"status": "ready"})


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
