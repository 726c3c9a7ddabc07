"""Imports every table so the metadata is complete (migrations, tests)."""

from vidlib.auth.models import RefreshToken, User
from vidlib.db.base import Base
from vidlib.idempotency.models import IdempotencyRecord
from vidlib.jobs.models import Job
from vidlib.tasks.models import VideoIngest
from vidlib.uploads.models import Transcript, Upload
from vidlib.videos.models import Video

__all__ = [
    "Base",
    "IdempotencyRecord",
    "Job",
    "RefreshToken",
    "Transcript",
    "Upload",
    "User",
    "Video",
    "VideoIngest",
]
