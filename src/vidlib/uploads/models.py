"""Tables: upload sessions and transcripts."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vidlib.db.base import Base, TimestampMixin


class UploadStatus(enum.StrEnum):
    """State of an upload session."""

    pending = "pending"
    completed = "completed"
    expired = "expired"
    aborted = "aborted"


class UploadMethod(enum.StrEnum):
    """How the bytes reach storage."""

    stream = "stream"  # through the API
    put = "put"  # one presigned PUT
    multipart = "multipart"  # presigned multipart parts


class Upload(TimestampMixin, Base):
    """One upload of one video; ``upload_id`` in the API is this row's id."""

    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_user_id_created_at", "user_id", "created_at"),
        Index("ix_uploads_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    method: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    s3_key: Mapped[str] = mapped_column(String(500), nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    original_filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    file_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    part_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    storage_upload_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    video_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("videos.id", ondelete="SET NULL"), nullable=True, index=True
    )
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class TranscriptFormat(enum.StrEnum):
    """Accepted transcript formats."""

    txt = "txt"
    srt = "srt"
    vtt = "vtt"


class Transcript(Base):
    """A validated transcript (UTF-8 text, at most 2 MiB) owned by a user."""

    __tablename__ = "transcripts"
    __table_args__ = (Index("ix_transcripts_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    format: Mapped[str] = mapped_column(String(8), nullable=False)
    original_filename: Mapped[str] = mapped_column(String(255), nullable=False)
    characters: Mapped[int] = mapped_column(Integer, nullable=False)
    cues: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(nullable=False)
