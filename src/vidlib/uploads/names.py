"""File names and object keys for uploads."""

from __future__ import annotations

import re
import unicodedata
import uuid
from urllib.parse import unquote

SAFE_NAME_MAX = 100
ORIGINAL_NAME_MAX = 255
KEY_ROOT = "uploads/users/"

_UNSAFE_RUN = re.compile(r"[^a-z0-9._-]+")
_SEPARATOR_RUN = re.compile(r"[._-]{2,}")
# Bidirectional overrides and isolates: invisible, and able to disguise an extension.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_VIDEO_KEY = re.compile(r"^uploads/users/([0-9a-fA-F-]{36})/videos/([^/]+)$")
_TIMESTAMP_PREFIX = re.compile(r"^\d{9,11}_")


def base_name(name: str) -> str:
    """The last path component of a client's file name (``/`` and ``\\`` both separate)."""
    return re.split(r"[/\\]", name)[-1]


def original_filename(name: str | None, fallback: str) -> str:
    """The client's name as shown to people: no path parts or control characters, ≤ 255."""
    cleaned = "".join(
        c
        for c in base_name(name or "")
        if unicodedata.category(c) != "Cc" and c not in _BIDI_CONTROLS
    ).strip()
    return cleaned[:ORIGINAL_NAME_MAX] or fallback


def safe_stem(name: str | None) -> str:
    """An ASCII slug of a file name without its extension: ``[a-z0-9._-]``, never empty."""
    base = base_name(name or "")
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    ascii_stem = (
        unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii").lower()
    )
    slug = _UNSAFE_RUN.sub("_", ascii_stem)
    slug = _SEPARATOR_RUN.sub("_", slug).strip("._-")
    return slug or "video"


def safe_filename(name: str | None, extension: str, *, suffix: str = "") -> str:
    """``{stem}{suffix}.{extension}``, at most 100 characters, safe in keys and URLs."""
    tail = f"{suffix}.{extension}"
    stem = safe_stem(name)[: SAFE_NAME_MAX - len(tail)].rstrip("._-") or "video"
    return f"{stem}{tail}"


def video_key(user_id: uuid.UUID, timestamp: int, filename: str) -> str:
    """``uploads/users/{user_id}/videos/{unix_ts}_{safe_filename}``."""
    return f"{KEY_ROOT}{user_id}/videos/{timestamp}_{filename}"


def owner_of_key(key: str) -> uuid.UUID | None:
    """The user id a key of the standard video layout belongs to."""
    match = _VIDEO_KEY.match(key)
    if match is None:
        return None
    try:
        return uuid.UUID(match.group(1))
    except ValueError:
        return None


def filename_of_key(key: str) -> str:
    """The file name part of a key, without the ``{unix_ts}_`` prefix uploads add."""
    return _TIMESTAMP_PREFIX.sub("", key.rsplit("/", 1)[-1])


def disposition_filename(header_value: str) -> str | None:
    """The ``filename`` of a part's Content-Disposition, decoding UTF-8 sent raw.

    Clients put UTF-8 bytes in the quoted ``filename`` (what browsers do), and a few
    send RFC 5987 ``filename*=UTF-8''…`` as well; the latter wins when present.
    """
    extended = re.search(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;\s]+)", header_value)
    if extended:
        return unquote(extended.group(1), errors="replace")
    match = re.search(r'(?:^|;)\s*filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', header_value)
    if match is None:
        return None
    value = match.group(1).strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value
