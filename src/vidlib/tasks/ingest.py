"""Hand new videos to media processing once their rows are committed."""

from __future__ import annotations

import uuid
from typing import Protocol


class IngestQueue(Protocol):
    """Where new videos go to get their duration, metadata and thumbnail."""

    async def enqueue(self, video_id: uuid.UUID) -> None:
        """Queue processing of one committed video (delivery is at least once)."""
        ...
