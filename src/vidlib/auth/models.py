"""Tables: users and refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vidlib.db.base import Base, TimestampMixin


class User(TimestampMixin, Base):
    """An account; owns videos, uploads, transcripts and jobs."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    # Live (not deleted) videos, kept exact in the same transaction as every change.
    video_count: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    # Bumped by every write to the user's library; caches are keyed by it, so a
    # write makes every cached list of the owner unreachable at once.
    library_version: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)


@dataclass(frozen=True, slots=True)
class Account:
    """The authenticated caller as one request sees it: a plain snapshot of its user row.

    Loaded with one Core query per request instead of an ORM identity-map load (the
    largest single cost of a cached read); writes to the row go through statements,
    never through this object.
    """

    id: uuid.UUID
    email: str
    created_at: datetime
    video_count: int
    library_version: int


class RefreshToken(Base):
    """One issued refresh token (stored as a hash); rotated on every use."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # All tokens descended from one login; reuse of a rotated token revokes the family.
    family_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(nullable=False)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
