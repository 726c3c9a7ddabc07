"""Queries on users and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vidlib.auth.models import Account, RefreshToken, User

_USERS = User.__table__
_ACCOUNT = select(
    _USERS.c.id,
    _USERS.c.email,
    _USERS.c.created_at,
    _USERS.c.video_count,
    _USERS.c.library_version,
).where(_USERS.c.id == bindparam("id"))


class UserRepository:
    """Users and their refresh tokens."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        """A user by id."""
        return await self.session.get(User, user_id)

    async def account(self, user_id: uuid.UUID) -> Account | None:
        """The caller's snapshot (one Core query on the session's connection, no ORM load)."""
        conn = await self.session.connection()
        row = (await conn.execute(_ACCOUNT, {"id": user_id})).first()
        return None if row is None else Account(*row)

    async def get_by_email(self, email: str) -> User | None:
        """A user by email (emails are stored lower-cased)."""
        result = await self.session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()

    async def add(self, user: User) -> User:
        """Insert a user (flush only; the request's session commits)."""
        self.session.add(user)
        await self.session.flush()
        return user

    async def add_refresh_token(self, token: RefreshToken) -> None:
        """Insert a refresh token."""
        self.session.add(token)
        await self.session.flush()

    async def get_refresh_token_for_update(self, token_hash: str) -> RefreshToken | None:
        """A refresh token by hash, locked against a concurrent rotation."""
        result = await self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )
        return result.scalar_one_or_none()

    async def mark_used(self, token_id: uuid.UUID, when: datetime) -> bool:
        """Mark a token used if it still is not; False if someone else used it first."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
            .values(used_at=when)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_family(self, family_id: uuid.UUID, when: datetime) -> None:
        """Revoke every token descended from one login."""
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.coalesce(RefreshToken.revoked_at, when))
        )
