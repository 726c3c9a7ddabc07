"""Decide a video's type from its first bytes, never from the client's word."""

from __future__ import annotations

from dataclasses import dataclass

# Enough for an ``ftyp`` box with its compatible brands, or an EBML header.
SNIFF_BYTES = 4096


@dataclass(frozen=True, slots=True)
class VideoType:
    """A container we accept: its media type and the extension files get."""

    content_type: str
    extension: str


MP4 = VideoType("video/mp4", "mp4")
QUICKTIME = VideoType("video/quicktime", "mov")
M4V = VideoType("video/x-m4v", "m4v")
WEBM = VideoType("video/webm", "webm")
MATROSKA = VideoType("video/x-matroska", "mkv")

ACCEPTED_TYPES: dict[str, VideoType] = {
    t.content_type: t for t in (MP4, QUICKTIME, M4V, WEBM, MATROSKA)
}

_QUICKTIME_BRANDS = {b"qt  "}
_M4V_BRANDS = {b"M4V ", b"M4VH", b"M4VP"}
# ISO-BMFF brands that are images or audio only: the container fits, the content is not video.
_NOT_VIDEO_BRANDS = {
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
    b"avif", b"avis", b"jp2 ", b"jpx ", b"jpm ", b"crx ",
    b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ",
}  # fmt: skip
# Top-level atoms a QuickTime file written before ``ftyp`` existed may start with.
_LEGACY_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"pnot"}

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID = b"\x42\x82"


def sniff_video(head: bytes) -> VideoType | None:
    """The container of a file from its first bytes, or ``None`` when it is not a video."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if head.startswith(_EBML_MAGIC):
        return _sniff_ebml(head)
    if len(head) >= 8 and head[4:8] in _LEGACY_QUICKTIME_ATOMS:
        size = int.from_bytes(head[0:4], "big")
        if size == 1 or size >= 8:
            return QUICKTIME
    return None


def _sniff_ftyp(head: bytes) -> VideoType | None:
    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    end = min(box_size, len(head)) if box_size >= 16 else 16
    compatible = {head[i : i + 4] for i in range(16, end - 3, 4)}
    if major in _QUICKTIME_BRANDS:
        return QUICKTIME
    if major in _M4V_BRANDS:
        return M4V
    if major in _NOT_VIDEO_BRANDS:
        return None
    if compatible & _NOT_VIDEO_BRANDS and not compatible - _NOT_VIDEO_BRANDS:
        return None
    return MP4


def _read_vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``pos``: (value, next position)."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first == 0:
        return None
    length = 8 - first.bit_length() + 1
    if pos + length > len(data):
        return None
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    return value, pos + length


def _sniff_ebml(head: bytes) -> VideoType | None:
    size = _read_vint(head, 4, keep_marker=False)
    if size is None:
        return None
    header_size, pos = size
    end = min(len(head), pos + header_size)
    doctype = b"matroska"  # the EBML default when DocType is absent
    while pos < end:
        element_id = _read_vint(head, pos, keep_marker=True)
        if element_id is None:
            return None
        id_value, data_pos = element_id
        id_len = data_pos - pos
        element_size = _read_vint(head, data_pos, keep_marker=False)
        if element_size is None:
            return None
        length, value_pos = element_size
        if id_value.to_bytes(id_len, "big") == _EBML_DOCTYPE_ID:
            doctype = head[value_pos : value_pos + length].rstrip(b"\x00")
            break
        pos = value_pos + length
    if doctype == b"webm":
        return WEBM
    if doctype == b"matroska":
        return MATROSKA
    return None
