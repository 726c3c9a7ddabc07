"""``POST /api/v1/upload/transcript`` and the transcript parser."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.uploads.conftest import Caller, chunked, form, row_counts
from vidlib.uploads.errors import UnsupportedMedia
from vidlib.uploads.models import Transcript
from vidlib.uploads.transcripts import InvalidTranscript, parse_transcript

URL = "/api/v1/upload/transcript"

SRT = """1
00:00:01,000 --> 00:00:02,500
Hello <i>there</i>.

2
00:00:03,000 --> 00:00:04,000
Second line
goes on.
"""

VTT = """WEBVTT - a title

NOTE a comment
that spans lines

STYLE
::cue { color: lime }

intro
00:01.000 --> 00:02.000 align:start
<v Ann>Hi &amp; welcome</v>

01:00:03.000 --> 01:00:04.000
Bye
"""


@pytest.fixture(params=["local"])
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Transcripts live in the database; the store does not matter."""
    return str(request.param)


async def send(
    client: httpx.AsyncClient, caller: Caller, data: bytes, filename: str
) -> httpx.Response:
    body, headers = form(data, filename)
    return await client.post(URL, content=chunked(body), headers={**caller.headers, **headers})


async def test_formats_counts_and_rejections(
    client: httpx.AsyncClient, app: FastAPI, user: Caller
) -> None:
    txt = await send(client, user, "\ufeffLine one\r\nLine two\n".encode(), "notes.TXT")
    assert txt.status_code == 201, txt.text
    assert txt.json()["format"] == "txt"
    assert (txt.json()["characters"], txt.json()["cues"]) == (18, 0)

    srt = await send(client, user, SRT.encode(), "talk.srt")
    assert srt.status_code == 201, srt.text
    assert srt.json() == {
        "transcript_upload_id": srt.json()["transcript_upload_id"],
        "format": "srt",
        "characters": len("Hello there.") + len("Second line\ngoes on."),
        "cues": 2,
    }

    vtt = await send(client, user, VTT.encode(), "talk.vtt")
    assert vtt.status_code == 201, vtt.text
    assert (vtt.json()["format"], vtt.json()["cues"]) == ("vtt", 2)
    assert vtt.json()["characters"] == len("Hi & welcome") + len("Bye")

    async with app.state.sessionmaker() as session:
        rows = (await session.scalars(select(Transcript))).all()
    assert sorted(r.format for r in rows) == ["srt", "txt", "vtt"]
    assert {r.user_id for r in rows} == {user.id}
    stored = next(r for r in rows if r.format == "txt")
    assert (stored.content, stored.original_filename) == ("Line one\nLine two\n", "notes.TXT")

    bad_utf8 = await send(client, user, b"caf\xe9 au lait", "a.txt")
    assert bad_utf8.status_code == 422
    assert bad_utf8.json() == {
        "detail": "The transcript is not valid UTF-8 (invalid byte at offset 3)."
    }
    broken = await send(client, user, SRT.replace("00:00:03,000", "00:00:3").encode(), "a.srt")
    assert broken.status_code == 422
    assert broken.json()["detail"].startswith("Cue 2 (line 6) has an invalid timing line")
    too_big = await send(client, user, b"a" * (2 * 1024 * 1024 + 1), "big.txt")
    assert too_big.status_code == 413
    assert (await send(client, user, b"%PDF-1.4", "doc.pdf")).status_code == 415
    assert (await send(client, user, b"", "empty.txt")).status_code == 422
    assert (await send(client, user, b"a\x00b", "nul.txt")).status_code == 422
    missing = await client.post(
        URL, content=b"x", headers={**user.headers, "Content-Type": "text/plain"}
    )
    assert missing.status_code == 422
    assert (await row_counts(app))["transcripts"] == 3


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("1\n00:00:02,000 --> 00:00:01,000\nx\n", "a.srt", "Cue 1 (line 2) ends before it starts."),
        ("one\n00:00:01,000 --> 00:00:02,000\nx\n", "a.srt", "does not start with a cue number"),
        ("1\nHello\n", "a.srt", "Cue 1 (line 2) has an invalid timing line"),
        ("1\n", "a.srt", "Cue 1 (line 1) has no timing line."),
        ("00:01.000 --> 00:02.000\nx\n", "a.vtt", "must start with the line 'WEBVTT'"),
        ("WEBVTT\n\nid\ntext only\n", "a.vtt", "Cue 1 (line 3) has no timing line"),
        ("WEBVTT\n\n00:01.000 --> 00:02.000\na --> b\n", "a.vtt", "Cue 1 (line 4) has text"),
        ("WEBVTT\n\nNOTE only a note\n", "a.vtt", "contains no cues"),
        ("   \n\n", "a.txt", "The transcript is empty."),
    ],
)
def test_parser_names_the_problem(text: str, name: str, message: str) -> None:
    with pytest.raises(InvalidTranscript, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_transcript(text.encode(), name)


def test_format_without_extension_comes_from_content() -> None:
    assert parse_transcript(VTT.encode(), "captions").format == "vtt"
    assert parse_transcript(SRT.encode(), None).format == "srt"
    assert parse_transcript(b"just words", "readme").format == "txt"
    with pytest.raises(UnsupportedMedia):
        parse_transcript(b"x", "slides.pptx")


def test_srt_tolerates_crlf_dots_and_trailing_space() -> None:
    text = "1\r\n00:00:01.000 --> 00:00:02.000 X1:1\r\n{\\an8}<b>Top</b>\r\n\r\n\r\n"
    parsed = parse_transcript(text.encode(), "x.srt")
    assert (parsed.cues, parsed.characters) == (1, 3)
