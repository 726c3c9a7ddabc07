"""Bodies of the library endpoints; the video object of the contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SortField = Literal[
    "created_at", "uploaded_at", "filename", "original_filename", "file_size", "duration"
]
SortOrder = Literal["asc", "desc"]
VideoStatusName = Literal["processing", "ready", "failed"]

# Keys the media processing owns; PATCH may not set them.
RESERVED_METADATA_KEYS = frozenset(
    {
        "resolution",
        "width",
        "height",
        "fps",
        "codec",
        "bitrate",
        "audio_codec",
        "rotation",
        "error",
        "coded_width",
        "coded_height",
        "container",
    }
)
MAX_USER_METADATA_KEYS = 50
MAX_USER_METADATA_BYTES = 16 * 1024


class VideoOut(BaseModel):
    """The video object of the contract."""

    id: uuid.UUID
    filename: str
    original_filename: str
    s3_key: str
    s3_url: str
    content_type: str
    file_size: int
    duration: float | None
    thumbnail_url: str | None
    uploaded_at: datetime
    metadata: dict[str, Any] | None
    status: VideoStatusName


class VideoListOut(BaseModel):
    """A page of the library."""

    videos: list[VideoOut]
    total_count: int
    page: int
    page_size: int
    total_pages: int
    has_more: bool
    next_cursor: str | None


class RecentVideosOut(BaseModel):
    """The newest videos, newest first."""

    videos: list[VideoOut]


class ListParams(BaseModel):
    """Query parameters of ``GET /s3-videos``."""

    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(10, ge=1, le=50)
    search: str | None = Field(None, max_length=200)
    sort_by: SortField = "created_at"
    sort_order: SortOrder = "desc"
    cursor: str | None = Field(None, max_length=1024)

    @field_validator("sort_order", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("search", "cursor", mode="after")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class VideoPatch(BaseModel):
    """``PATCH /s3-videos/{id}``: rename and/or merge user metadata (null removes a key)."""

    model_config = ConfigDict(extra="forbid")

    filename: str | None = Field(None, min_length=1, max_length=255)
    metadata: dict[str, Any] | None = None

    @field_validator("filename")
    @classmethod
    def _clean_filename(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or any(ord(c) < 32 or c == "\x7f" for c in value):
            raise ValueError("filename must be non-empty and contain no control characters")
        if "/" in value or "\\" in value:
            raise ValueError("filename must not contain path separators")
        return value

    @field_validator("metadata")
    @classmethod
    def _user_keys_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        reserved = sorted(RESERVED_METADATA_KEYS & value.keys())
        if reserved:
            raise ValueError(f"metadata keys set by processing cannot be changed: {reserved}")
        if len(value) > MAX_USER_METADATA_KEYS:
            raise ValueError(f"at most {MAX_USER_METADATA_KEYS} metadata keys")
        if any(not k or len(k) > 64 for k in value):
            raise ValueError("metadata keys must be 1..64 characters")
        return value
