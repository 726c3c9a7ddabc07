"""Access tokens (HS256 JWT) and opaque refresh tokens.

Routes never read tokens themselves: they depend on ``CurrentUser``, which asks
a ``TokenVerifier``. Another identity provider (JWKS/OIDC) is another verifier.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import jwt

ALGORITHM = "HS256"
ACCESS_TYPE = "access"
# Request-state key under which middleware leaves (token, Principal) it already verified.
VERIFIED_PRINCIPAL = "verified_principal"


class InvalidToken(Exception):
    """The token is not acceptable; the reason is for logs, never for clients."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: uuid.UUID
    token_id: str


class TokenVerifier(Protocol):
    """Turns a bearer token into a ``Principal`` or raises ``InvalidToken``."""

    def verify(self, token: str) -> Principal:
        """Verify signature, expiry and type."""
        ...


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    """An access token and its lifetime in seconds."""

    token: str
    expires_in: int


class JWTService:
    """Issues and verifies HS256 access tokens signed with the service's secret."""

    # Verified tokens remembered (a client repeats its token on every request).
    MEMO_SIZE = 4096
    LEEWAY_SECONDS = 5

    def __init__(self, secret: str, ttl_seconds: int, issuer: str = "vidlib") -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        self._issuer = issuer
        # token -> (expiry, principal) for tokens that passed every check.
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def issue(self, user_id: uuid.UUID, *, now: datetime | None = None) -> IssuedAccessToken:
        """A fresh access token for ``user_id``."""
        now = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self._ttl)).timestamp()),
            "jti": uuid.uuid4().hex,
            "iss": self._issuer,
            "type": ACCESS_TYPE,
        }
        return IssuedAccessToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl)

    def verify(self, token: str) -> Principal:
        """Check signature (HS256 only: ``alg: none`` and others are refused), time and type.

        A token that passed is remembered until it expires: its bytes are what was
        signed, so the same string verifies the same way until then (``nbf`` is never
        later than issue, so it cannot turn a remembered token invalid).
        """
        memo = self._verified.get(token)
        if memo is not None:
            if memo[0] + self.LEEWAY_SECONDS >= time.time():
                return memo[1]
            self._verified.pop(token, None)
        principal, expires = self._verify(token)
        self._verified[token] = (expires, principal)
        if len(self._verified) > self.MEMO_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "jti", "type"]},
                leeway=self.LEEWAY_SECONDS,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        if claims.get("type") != ACCESS_TYPE:
            raise InvalidToken("wrong token type")
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise InvalidToken("bad subject") from exc
        return Principal(user_id=user_id, token_id=str(claims["jti"])), float(claims["exp"])


def new_refresh_token() -> tuple[str, str]:
    """A random refresh token and the hash under which it is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of a refresh token (tokens are high-entropy; no salt needed)."""
    return hashlib.sha256(token.encode()).hexdigest()
