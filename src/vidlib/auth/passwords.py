"""Argon2id password hashing, run off the event loop (it is deliberately slow)."""

from __future__ import annotations

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP's Argon2id profile (19 MiB, 2 passes, 1 lane): ~70 ms here. The library's
# default (64 MiB, 3 passes, 4 lanes) took ~0.5 s on a 2-core machine, which makes
# login a cheap way to exhaust the API's CPU.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the email is unknown, so a miss costs what a hit costs
# (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("vidlib-timing-equaliser")


async def hash_password(password: str) -> str:
    """Argon2id hash of ``password``."""
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; spends the same time when there is no hash."""

    def _verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(_verify)
