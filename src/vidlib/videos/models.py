"""The ``videos`` table, as in the original design plus sha256, status and deleted_at."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Numeric, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from vidlib.db.base import Base, JSONType, utcnow

LIVE = text("deleted_at IS NULL")


class VideoStatus(enum.StrEnum):
    """Processing state of a video."""

    processing = "processing"
    ready = "ready"
    failed = "failed"


class Video(Base):
    """One stored video of one user."""

    __tablename__ = "videos"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    original_filename: Mapped[str] = mapped_column(String(255), nullable=False)
    s3_key: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    s3_url: Mapped[str] = mapped_column(String(1000), nullable=False)
    s3_bucket: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    file_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    duration: Mapped[float | None] = mapped_column(Numeric(10, 2, asdecimal=False), nullable=True)
    thumbnail_s3_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    thumbnail_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # ``metadata`` is reserved on declarative classes; the column keeps the name.
    media_metadata: Mapped[dict[str, Any] | None] = mapped_column(
        "metadata", JSONType, nullable=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default=VideoStatus.processing.value
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    @property
    def uploaded_at(self) -> datetime:
        """When the video entered the library (the contract's name for ``created_at``)."""
        return self.created_at

    __table_args__ = (
        # The original design's indexes.
        Index("idx_videos_user_id", "user_id"),
        Index("idx_videos_created_at", created_at.desc()),
        Index("idx_videos_filename", "filename"),
        Index("idx_videos_s3_key", "s3_key"),
        # Keyset pagination: one (user, sort key, id) index per sort field, live rows only.
        Index(
            "ix_videos_live_created",
            "user_id",
            "created_at",
            "id",
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        Index(
            "ix_videos_live_filename",
            "user_id",
            func.lower(filename),
            "id",
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        Index(
            "ix_videos_live_original_filename",
            "user_id",
            func.lower(original_filename),
            "id",
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        Index(
            "ix_videos_live_file_size",
            "user_id",
            "file_size",
            "id",
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        Index(
            "ix_videos_live_duration",
            "user_id",
            func.coalesce(duration, -1),
            "id",
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        # One live copy of given bytes per user: backs upload dedupe against races.
        Index(
            "uq_videos_user_sha256_live",
            "user_id",
            "sha256",
            unique=True,
            sqlite_where=text("deleted_at IS NULL AND sha256 IS NOT NULL"),
            postgresql_where=text("deleted_at IS NULL AND sha256 IS NOT NULL"),
        ),
        # The sweeper's scan for videos still being processed.
        Index(
            "ix_videos_processing",
            "created_at",
            sqlite_where=text("status = 'processing'"),
            postgresql_where=text("status = 'processing'"),
        ),
        Index(
            "ix_videos_deleted_at",
            "deleted_at",
            sqlite_where=text("deleted_at IS NOT NULL"),
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
    )
