"""The ``jobs`` table: work a user asks for on one of their videos."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from vidlib.db.base import Base, JSONType, utcnow

UNFINISHED = text("status IN ('queued', 'running')")


class JobStatus(enum.StrEnum):
    """Where a job is: ``queued → running → succeeded | failed | cancelled``."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class TranscriptSource(enum.StrEnum):
    """Where a job's transcript came from."""

    text = "text"  # ``transcript_text`` in the request
    upload = "upload"  # ``transcript_upload_id``: a stored transcript


class Job(Base):
    """One job of one user on one of their videos.

    The row is the source of truth for the job's state; the queue only carries its
    id. ``attempts`` counts claims by a worker and doubles as the fencing token:
    a worker writes only while the row still carries the attempt number it claimed.
    """

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    # A purged video takes its jobs (and, before that, their files) with it.
    video_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), nullable=False
    )
    upload_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("uploads.id", ondelete="SET NULL"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=JobStatus.queued.value)
    title: Mapped[str | None] = mapped_column(String(255), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    transcript_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    transcript_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("transcripts.id", ondelete="SET NULL"), nullable=True
    )
    # Only for ``transcript_source == "text"``; an uploaded transcript is read by id.
    transcript_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    transcript_format: Mapped[str | None] = mapped_column(String(8), nullable=True)
    transcript_characters: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # While running: the claim expires then unless renewed (a dead worker's job is
    # taken over). While queued: None.
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Not to be started before this time (retry backoff, or waiting for the video).
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Last time the sweeper put the job on the queue.
    enqueued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at", "id"),
        Index("ix_jobs_user_status_created", "user_id", "status", "created_at", "id"),
        Index("ix_jobs_video_id", "video_id"),
        # The sweeper's scan: only unfinished jobs are indexed.
        Index(
            "ix_jobs_unfinished",
            "status",
            "created_at",
            sqlite_where=UNFINISHED,
            postgresql_where=UNFINISHED,
        ),
    )
