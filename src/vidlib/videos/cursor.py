"""Sort keys and opaque, signed keyset cursors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, func

from vidlib.errors import Unprocessable
from vidlib.videos.models import Video

INVALID_CURSOR = "The cursor is invalid or does not belong to this query."


def sort_key(sort_by: str) -> ColumnElement[Any]:
    """The expression a sort field orders by (each has a matching index).

    Text sorts are case-insensitive; ``duration`` places unknown (NULL) durations
    as -1 so the order and the keyset comparison stay total on every database.
    """
    if sort_by in ("created_at", "uploaded_at"):
        return Video.created_at  # type: ignore[return-value]
    if sort_by == "filename":
        return func.lower(Video.filename)
    if sort_by == "original_filename":
        return func.lower(Video.original_filename)
    if sort_by == "file_size":
        return Video.file_size  # type: ignore[return-value]
    if sort_by == "duration":
        return func.coalesce(Video.duration, -1)
    raise ValueError(sort_by)


def sort_value(video: Video | Row[Any], sort_by: str) -> Any:
    """The value of a row's sort key, as the database compares it."""
    if sort_by in ("created_at", "uploaded_at"):
        return video.created_at
    if sort_by == "filename":
        return video.filename.lower()
    if sort_by == "original_filename":
        return video.original_filename.lower()
    if sort_by == "file_size":
        return video.file_size
    return video.duration if video.duration is not None else -1


def normalise_sort(sort_by: str) -> str:
    """``uploaded_at`` is an alias of ``created_at``."""
    return "created_at" if sort_by == "uploaded_at" else sort_by


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in one query: after (value, id), on page ``page``."""

    value: Any
    last_id: uuid.UUID
    page: int
    query: str  # fingerprint of the search, sort, order and page size


def query_fingerprint(
    user_id: uuid.UUID, search: str | None, sort_by: str, order: str, page_size: int
) -> str:
    """Binds a cursor to its user and query."""
    raw = json.dumps([str(user_id), search, normalise_sort(sort_by), order, page_size])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


_VALUE_TYPES: dict[str, type | tuple[type, ...]] = {
    "created_at": str,
    "filename": str,
    "original_filename": str,
    "file_size": int,
    "duration": (int, float),
}


def _parse_value(value: Any, sort_by: str) -> Any:
    """A cursor's sort value, checked against the type its sort field compares."""
    if isinstance(value, bool) or not isinstance(value, _VALUE_TYPES[sort_by]):
        raise ValueError("bad value")
    return datetime.fromisoformat(str(value)) if sort_by == "created_at" else value


class CursorCodec:
    """Encodes cursors as signed, URL-safe strings; anything forged or garbled is a 422."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"vidlib-cursor:" + secret.encode()).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def encode(self, cursor: Cursor, sort_by: str) -> str:
        """The opaque string for ``cursor``."""
        value = cursor.value
        if isinstance(value, datetime):
            value = value.isoformat()
        payload = json.dumps(
            {"v": value, "i": cursor.last_id.hex, "p": cursor.page, "q": cursor.query},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(payload + self._sign(payload)).rstrip(b"=").decode()

    def decode(self, token: str, *, sort_by: str, fingerprint: str) -> Cursor:
        """Verify and parse a cursor issued for this exact query."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload, mac = raw[:-16], raw[-16:]
            if len(raw) <= 16 or not hmac.compare_digest(mac, self._sign(payload)):
                raise ValueError("bad signature")
            data = json.loads(payload)
            if data["q"] != fingerprint:
                raise ValueError("other query")
            sort_by = normalise_sort(sort_by)
            value = _parse_value(data["v"], sort_by)
            page = int(data["p"])
            if page < 2:
                raise ValueError("bad page")
            return Cursor(
                value=value, last_id=uuid.UUID(hex=data["i"]), page=page, query=fingerprint
            )
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise Unprocessable(INVALID_CURSOR) from exc
