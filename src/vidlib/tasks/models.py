"""``video_ingest``: the processing bookkeeping of videos still being ingested.

Kept beside ``videos`` rather than in it: these columns change on every claim and
heartbeat, and none of them is part of the video object or of any cached list.
A row exists once a worker (or the sweeper) has touched the video.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vidlib.db.base import Base, utcnow


class VideoIngest(Base):
    """Attempts, lease and retry time of one video's media processing."""

    __tablename__ = "video_ingest"

    video_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    # Claims so far; also the fencing token of the current claim.
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)
