"""``create_app(settings)``: wiring only."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from vidlib.auth.accounts import AccountCache, AccountChanges
from vidlib.auth.router import auth_router, users_router
from vidlib.auth.tokens import JWTService
from vidlib.cache import create_cache
from vidlib.config import Settings, load_settings
from vidlib.db.session import create_engine, create_read_sessionmaker, create_sessionmaker
from vidlib.errors import install_error_handlers
from vidlib.idempotency.middleware import IdempotencyMiddleware
from vidlib.jobs.router import router as jobs_router
from vidlib.observability.bodylimit import BodyLimitMiddleware
from vidlib.observability.health import router as health_router
from vidlib.observability.middleware import Metrics, RequestContextMiddleware
from vidlib.ratelimit import RateLimitMiddleware
from vidlib.storage import open_store
from vidlib.storage.base import ObjectStore
from vidlib.storage.local import LocalStore
from vidlib.storage.local_router import build_local_storage_router
from vidlib.tasks.runtime import start_background
from vidlib.uploads.concurrency import create_upload_slots
from vidlib.uploads.router import router as uploads_router
from vidlib.videos.cursor import CursorCodec
from vidlib.videos.router import router as videos_router
from vidlib.videos.service import LibraryReader, VideoPresenter


def create_app(settings: Settings | None = None, *, own_process: bool = False) -> FastAPI:
    """Build the ASGI application; resources open in the lifespan."""
    settings = settings or load_settings()
    local_store: LocalStore | None = None
    if settings.storage_backend == "local":
        local_store = LocalStore(
            settings.storage_dir, settings.public_url, settings.secret_key.encode()
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each resource is closed (in reverse order) at shutdown, or as soon as a later
        # step of the start-up fails.
        async with AsyncExitStack() as resources:
            engine = create_engine(
                settings.resolved_database_url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
            )
            resources.push_async_callback(engine.dispose)
            store: ObjectStore = local_store or await open_store(settings)
            resources.push_async_callback(store.close)
            cache = create_cache(settings.redis_url)
            resources.push_async_callback(cache.close)
            upload_slots = create_upload_slots(
                settings.upload_concurrency_per_user, settings.redis_url
            )
            resources.push_async_callback(upload_slots.close)
            app.state.engine = engine
            accounts = AccountCache()
            app.state.accounts = accounts
            # A session that changed a user's row drops that user's snapshot at commit,
            # before any notification could arrive: the caller reads its own write next.
            app.state.sessionmaker = create_sessionmaker(
                engine, on_account_change=accounts.invalidate
            )
            app.state.read_sessionmaker = create_read_sessionmaker(engine)
            if settings.account_cache and engine.dialect.name == "postgresql":
                changes = AccountChanges(settings.resolved_database_url, accounts)
                await changes.start()
                resources.push_async_callback(changes.aclose)
            app.state.store = store
            app.state.cache = cache
            app.state.upload_slots = upload_slots
            app.state.presenter = VideoPresenter(store, settings.url_ttl_seconds)
            app.state.library_reader = LibraryReader(
                app.state.read_sessionmaker,
                cache=cache,
                presenter=app.state.presenter,
                cursors=app.state.cursors,
            )
            # In-process work on the embedded default; with Redis the API only enqueues.
            background = await start_background(settings, app.state.sessionmaker, store)
            resources.push_async_callback(_close_background, app)
            app.state.background = background
            app.state.ingest = background.ingest
            app.state.jobs = background.jobs
            if own_process:
                tune_gc()
            yield

    app = FastAPI(
        title="vidlib",
        version="0.1.0",
        summary="A video library on S3 for mobile apps.",
        lifespan=lifespan,
    )
    jwt_service = JWTService(settings.secret_key, settings.access_token_ttl_seconds)
    app.state.settings = settings
    app.state.jwt_service = jwt_service
    app.state.token_verifier = jwt_service
    app.state.metrics = Metrics()
    app.state.cursors = CursorCodec(settings.secret_key)

    install_error_handlers(app)
    # Added first, so they run innermost: 429s still get CORS headers and a request id.
    app.add_middleware(IdempotencyMiddleware, verifier=jwt_service)
    app.add_middleware(BodyLimitMiddleware)
    if settings.rate_limit_enabled:
        app.add_middleware(RateLimitMiddleware, settings=settings, verifier=jwt_service)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "ETag"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)

    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(videos_router)
    app.include_router(uploads_router)
    app.include_router(jobs_router)
    if local_store is not None:
        app.include_router(build_local_storage_router(local_store))
    return app


async def _close_background(app: FastAPI) -> None:
    """Stop the background work the app runs at shutdown (whichever was installed last)."""
    await app.state.background.aclose()


def tune_gc() -> None:
    """Garbage collection for a long-running server process.

    Everything built at start-up lives as long as the process: frozen, it is kept out
    of the collector's full passes, which otherwise stall every request in flight
    (p99 of a library page 3-4x its median). Fewer young-generation passes: a request
    allocates thousands of short-lived objects that reference counting already frees.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def create_app_from_env() -> FastAPI:
    """The factory ``vidlib serve`` hands to uvicorn (one per worker process)."""
    from vidlib.observability.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings, own_process=True)
