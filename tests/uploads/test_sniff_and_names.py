"""Type sniffing, file names and keys (no server needed)."""

from __future__ import annotations

import uuid

import pytest

from vidlib.uploads.names import (
    disposition_filename,
    filename_of_key,
    original_filename,
    owner_of_key,
    safe_filename,
    video_key,
)
from vidlib.uploads.sniff import sniff_video


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + bytes(range(64))


def ebml(doctype: bytes | None) -> bytes:
    children = b"\x42\x86\x81\x01"
    if doctype is not None:
        children += b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(children)]) + children + b"\x18\x53\x80\x67"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (ftyp(b"isom", b"isom", b"mp41"), "video/mp4"),
        (ftyp(b"mp42", b"mp42", b"isom"), "video/mp4"),
        (ftyp(b"qt  ", b"qt  "), "video/quicktime"),
        (ftyp(b"M4V ", b"M4V ", b"mp42"), "video/x-m4v"),
        (b"\x00\x00\x00\x08wide" + bytes(range(7, 39)), "video/quicktime"),
        (ebml(b"webm"), "video/webm"),
        (ebml(b"matroska"), "video/x-matroska"),
        (ebml(None), "video/x-matroska"),
        (ftyp(b"heic", b"mif1", b"heic"), None),
        (ftyp(b"M4A ", b"M4A ", b"mp42"), None),
        (ftyp(b"avif", b"avif", b"mif1"), None),
        (ebml(b"other"), None),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", None),
        (b"GIF89a" + bytes(range(20)), None),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniff(head: bytes, expected: str | None) -> None:
    found = sniff_video(head)
    assert (found.content_type if found else None) == expected


@pytest.mark.parametrize(
    ("name", "ext", "expected"),
    [
        ("My Video.MOV", "mov", "my_video.mov"),
        ("Été à la plage.mp4", "mp4", "ete_a_la_plage.mp4"),
        ("../../etc/passwd", "mp4", "passwd.mp4"),
        ("C:\\Users\\me\\clip.mkv", "mkv", "clip.mkv"),
        ("视频.mp4", "mp4", "video.mp4"),
        ("", "webm", "video.webm"),
        (None, "mp4", "video.mp4"),
        ("...", "mp4", "video.mp4"),
        (".hidden.mp4", "mp4", "hidden.mp4"),
        ("a  --  b__c.tar.mp4", "mp4", "a_b_c.tar.mp4"),
        ("x" * 300 + ".mp4", "mp4", "x" * 96 + ".mp4"),
    ],
)
def test_safe_filename(name: str | None, ext: str, expected: str) -> None:
    assert safe_filename(name, ext) == expected


def test_suffix_and_keys() -> None:
    assert safe_filename("a.mp4", "mp4", suffix="_2") == "a_2.mp4"
    assert len(safe_filename("y" * 300, "mp4", suffix="_12")) == 100
    user = uuid.uuid4()
    key = video_key(user, 1704123456, "my_video.mp4")
    assert key == f"uploads/users/{user}/videos/1704123456_my_video.mp4"
    assert owner_of_key(key) == user
    assert owner_of_key(f"uploads/users/{user}/thumbnails/1_x_thumb.jpg") is None
    assert owner_of_key("uploads/users/not-a-uuid/videos/x.mp4") is None
    assert filename_of_key(key) == "my_video.mp4"


def test_original_filename() -> None:
    assert original_filename("dir/My\x00 Clip\u202e4pm.mov", "f") == "My Clip4pm.mov"
    assert original_filename("  ", "fallback.mp4") == "fallback.mp4"
    assert len(original_filename("é" * 400, "f")) == 255


def test_disposition_filename() -> None:
    assert disposition_filename('form-data; name="file"; filename="a \\"b\\".mp4"') == 'a "b".mp4'
    assert disposition_filename("form-data; name=file; filename=plain.mp4") == "plain.mp4"
    assert (
        disposition_filename('form-data; name="file"; filename="x"; filename*=UTF-8\'\'%C3%A9.mp4')
        == "é.mp4"
    )
    assert disposition_filename('form-data; name="file"') is None
