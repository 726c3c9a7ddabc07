"""Per-user and per-address rate limits as pure-ASGI middleware (429 + ``Retry-After``).

Counters live in Redis when it is configured (shared by every API process) and in
process memory otherwise. A cache outage never takes the API down: the limiter
then lets requests through and logs it.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from vidlib.auth.tokens import VERIFIED_PRINCIPAL, InvalidToken, TokenVerifier
from vidlib.config import Settings
from vidlib.errors import error_json

log = logging.getLogger("vidlib.ratelimit")

AUTH_PATHS = frozenset(
    {"/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/token", "/api/v1/auth/refresh"}
)
# Operations endpoints, docs and signed local-storage URLs (players issue many ranged reads).
EXEMPT_PREFIXES = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/storage/")


class RateLimitMiddleware:
    """Counts each request against the caller's address, user and (for auth) auth budget."""

    def __init__(self, app: ASGIApp, settings: Settings, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier
        storage: Storage
        if settings.redis_url:
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix="vidlib:ratelimit",
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
        else:
            storage = MemoryStorage()
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.per_user: RateLimitItem = parse(settings.rate_limit_per_user)
        self.per_ip: RateLimitItem = parse(settings.rate_limit_per_ip)
        self.auth: RateLimitItem = parse(settings.rate_limit_auth)

    def _user(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token:
                    return None
                try:
                    # Verified, so nobody can spend another user's budget.
                    principal = self.verifier.verify(token)
                except InvalidToken:
                    return None
                # CurrentUser reuses it instead of verifying the same token again.
                scope.setdefault("state", {})[VERIFIED_PRINCIPAL] = (token, principal)
                return str(principal.user_id)
        return None

    async def _exceeded(self, item: RateLimitItem, *ids: str) -> int | None:
        """Seconds to wait when over the limit, else None."""
        try:
            if await self.limiter.hit(item, *ids):
                return None
            stats = await self.limiter.get_window_stats(item, *ids)
        except Exception as exc:  # the limiter must never take the API down
            log.warning("rate limiter unavailable: %s", type(exc).__name__)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        checks: list[tuple[RateLimitItem, tuple[str, ...]]] = [(self.per_ip, ("ip", address))]
        if scope["path"] in AUTH_PATHS:
            checks.append((self.auth, ("auth", address)))
        else:
            user = self._user(scope)
            if user is not None:
                checks.append((self.per_user, ("user", user)))
        for item, ids in checks:
            wait = await self._exceeded(item, *ids)
            if wait is not None:
                await _too_many(wait)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _too_many(retry_after: int) -> JSONResponse:
    return error_json(
        429,
        f"Too many requests; retry in {retry_after} second(s).",
        headers={"Retry-After": str(retry_after)},
    )
