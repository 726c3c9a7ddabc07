"""Bodies of the job endpoints; the job object of the contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TranscriptSourceName = Literal["text", "upload"]

# An inline transcript may be as large as an uploaded one (2 MiB of UTF-8).
MAX_TRANSCRIPT_CHARS = 2 * 1024 * 1024
MAX_OPTIONS_BYTES = 16 * 1024


class JobCreateIn(BaseModel):
    """``POST /jobs/create``: one video reference, at most one transcript source."""

    video_upload_id: str | None = Field(None, max_length=64, description="An upload's id.")
    s3_video_id: uuid.UUID | None = Field(None, description="A video of the library.")
    transcript_text: str | None = Field(
        None, max_length=MAX_TRANSCRIPT_CHARS, description="Plain text, SRT or WebVTT."
    )
    transcript_upload_id: str | None = Field(
        None, max_length=64, description="A transcript from POST /api/v1/upload/transcript."
    )
    title: str | None = Field(None, max_length=255)
    options: dict[str, Any] | None = Field(None, description="Passed to the job's processor.")
    kind: str = Field("captions", min_length=1, max_length=64, description="The processor.")


class JobVideoOut(BaseModel):
    """The video a job works on."""

    id: uuid.UUID
    s3_key: str
    filename: str


class JobTranscriptOut(BaseModel):
    """Where a job's transcript came from, and its length."""

    source: TranscriptSourceName
    characters: int


class JobOut(BaseModel):
    """The job object of the contract (plus ``kind``)."""

    id: uuid.UUID
    kind: str
    status: JobStatusName
    video: JobVideoOut
    transcript: JobTranscriptOut | None
    title: str | None
    options: dict[str, Any]
    progress: float = Field(ge=0, le=1)
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


class JobListOut(BaseModel):
    """A page of the caller's jobs, newest first."""

    jobs: list[JobOut]
    total_count: int
    page: int
    page_size: int
    total_pages: int
    has_more: bool


class JobListParams(BaseModel):
    """Query parameters of ``GET /jobs``."""

    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(10, ge=1, le=50)
    status: JobStatusName | None = None
