"""Bodies of the upload endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vidlib.storage.base import MAX_PARTS
from vidlib.videos.schemas import VideoOut

UploadStatusName = Literal["pending", "completed", "expired", "aborted"]


class UploadResultOut(BaseModel):
    """A video that entered the library through an upload (or the one it duplicates)."""

    upload_id: uuid.UUID
    video: VideoOut
    deduplicated: bool


class DirectUploadIn(BaseModel):
    """``POST /upload/video/direct``: what the client is about to send."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=1024)
    content_type: str = Field(min_length=1, max_length=100)
    file_size: int = Field(ge=1, description="Exact size in bytes.")
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Hex SHA-256 of the file; when it matches a video you have, that video "
        "is returned and nothing needs uploading.",
    )

    @field_validator("content_type")
    @classmethod
    def _media_type(cls, value: str) -> str:
        return value.split(";", 1)[0].strip().lower()

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else None


class DirectPutOut(BaseModel):
    """Send the whole file in one PUT to ``url`` with exactly these ``headers``."""

    upload_id: uuid.UUID
    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str]
    expires_at: datetime
    deduplicated: Literal[False] = False


class PartUrlOut(BaseModel):
    """Where to PUT one part."""

    part_number: int
    url: str


class DirectMultipartOut(BaseModel):
    """Send the file in ``part_count`` parts of ``part_size`` bytes (the last may be
    shorter); URLs for the first parts are here, ``/parts`` gives the rest."""

    upload_id: uuid.UUID
    method: Literal["multipart"] = "multipart"
    part_size: int
    part_count: int
    parts: list[PartUrlOut]
    expires_at: datetime
    deduplicated: Literal[False] = False


class PartIn(BaseModel):
    """A part the client uploaded, as storage acknowledged it."""

    part_number: int = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(min_length=1, max_length=256)


class CompleteIn(BaseModel):
    """``POST …/complete``: optionally the parts the client holds ETags for."""

    model_config = ConfigDict(extra="forbid")

    parts: list[PartIn] | None = Field(None, max_length=MAX_PARTS)


class PartStateOut(BaseModel):
    """A part storage already holds."""

    part_number: int
    size: int
    etag: str


class DirectUploadStateOut(BaseModel):
    """What a restarted client needs to resume."""

    upload_id: uuid.UUID
    status: UploadStatusName
    method: Literal["PUT", "multipart"]
    filename: str
    content_type: str
    file_size: int
    part_size: int | None
    part_count: int
    expires_at: datetime | None
    parts: list[PartStateOut]
    video_id: uuid.UUID | None


class PartNumbersIn(BaseModel):
    """``POST …/parts``: which parts need (fresh) URLs."""

    model_config = ConfigDict(extra="forbid")

    part_numbers: list[int] = Field(min_length=1, max_length=1000)


class PartUrlsOut(BaseModel):
    """Fresh part URLs."""

    parts: list[PartUrlOut]
    expires_at: datetime


class TranscriptOut(BaseModel):
    """A stored transcript: counts as defined in ``uploads/transcripts.py``."""

    transcript_upload_id: uuid.UUID
    format: Literal["txt", "srt", "vtt"]
    characters: int
    cues: int
