"""Registration, login and refresh-token rotation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vidlib.auth.models import RefreshToken, User
from vidlib.auth.passwords import hash_password, verify_password
from vidlib.auth.repository import UserRepository
from vidlib.auth.schemas import TokenPair
from vidlib.auth.tokens import JWTService, hash_refresh_token, new_refresh_token
from vidlib.errors import Conflict, Unauthorized

BAD_LOGIN = "Incorrect email or password."
BAD_REFRESH = "The refresh token is invalid or expired."


class EmailTaken(Conflict):
    """409 on register."""

    message = "An account with this email already exists."


async def register(session: AsyncSession, *, email: str, password: str) -> User:
    """Create a user; 409 if the email is taken (case-insensitively)."""
    repo = UserRepository(session)
    email = email.strip().lower()
    password_hash = await hash_password(password)
    if await repo.get_by_email(email) is not None:
        raise EmailTaken()
    now = datetime.now(UTC)
    user = User(
        id=uuid.uuid4(),
        email=email,
        password_hash=password_hash,
        created_at=now,
        updated_at=now,
        video_count=0,
        library_version=0,
    )
    try:
        async with session.begin_nested():
            await repo.add(user)
    except IntegrityError as exc:  # a concurrent registration won the race
        raise EmailTaken() from exc
    return user


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    """The user with these credentials, or 401 (same message and cost either way)."""
    user = await UserRepository(session).get_by_email(email.strip())
    ok = await verify_password(user.password_hash if user else None, password)
    if user is None or not ok:
        raise Unauthorized(BAD_LOGIN)
    return user


async def issue_pair(
    session: AsyncSession,
    jwt_service: JWTService,
    *,
    user_id: uuid.UUID,
    refresh_ttl_seconds: int,
    family_id: uuid.UUID | None = None,
) -> TokenPair:
    """A new access token and refresh token (continuing ``family_id`` on rotation)."""
    now = datetime.now(UTC)
    token, token_hash = new_refresh_token()
    await UserRepository(session).add_refresh_token(
        RefreshToken(
            id=uuid.uuid4(),
            user_id=user_id,
            family_id=family_id or uuid.uuid4(),
            token_hash=token_hash,
            created_at=now,
            expires_at=now + timedelta(seconds=refresh_ttl_seconds),
        )
    )
    access = jwt_service.issue(user_id, now=now)
    return TokenPair(access_token=access.token, refresh_token=token, expires_in=access.expires_in)


async def rotate(
    session: AsyncSession, jwt_service: JWTService, *, refresh_token: str, refresh_ttl_seconds: int
) -> TokenPair:
    """Exchange a refresh token for a new pair; a reused token revokes its whole family."""
    repo = UserRepository(session)
    now = datetime.now(UTC)
    stored = await repo.get_refresh_token_for_update(hash_refresh_token(refresh_token))
    if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
        raise Unauthorized(BAD_REFRESH)
    if stored.used_at is not None or not await repo.mark_used(stored.id, now):
        # Someone holds a copy of a rotated token: end every session of that login.
        await repo.revoke_family(stored.family_id, now)
        await session.commit()
        raise Unauthorized(BAD_REFRESH)
    if await repo.get(stored.user_id) is None:
        raise Unauthorized(BAD_REFRESH)
    return await issue_pair(
        session,
        jwt_service,
        user_id=stored.user_id,
        refresh_ttl_seconds=refresh_ttl_seconds,
        family_id=stored.family_id,
    )
