"""Cue building and writing (pure functions)."""

from __future__ import annotations

from vidlib.jobs.captions import Cue, clip, pace, parse_timed, split_text, to_srt, to_webvtt
from vidlib.uploads.transcripts import parse_srt, parse_vtt


def test_cues_hold_at_most_two_lines_of_42_characters() -> None:
    text = " ".join(f"word{n}" for n in range(300)) + " " + "x" * 100
    cues = split_text(text)
    assert all(1 <= len(lines) <= 2 for lines in cues)
    assert all(len(line) <= 42 for lines in cues for line in lines)
    joined = "".join("".join(lines).replace(" ", "") for lines in cues)
    assert joined == text.replace(" ", "")


def test_cues_end_at_sentence_ends_when_they_can() -> None:
    cues = split_text(
        "It rained. We stayed in and read books all afternoon long. "
        "Then the sun came out over the hills."
    )
    texts = [" ".join(lines) for lines in cues]
    # The last sentence would fit only in part: it starts a cue of its own.
    assert texts == [
        "It rained. We stayed in and read books all afternoon long.",
        "Then the sun came out over the hills.",
    ]
    # Two lines of similar length read better than a full line and a stub.
    assert cues[0] == ("It rained. We stayed in and", "read books all afternoon long.")


def test_pacing_is_proportional_and_covers_the_duration() -> None:
    cues = pace([("short",), ("a much longer cue text",)], 2700)
    assert [(c.start_ms, c.end_ms) for c in cues] == [(0, 500), (500, 2700)]
    assert pace([], 1000) == []
    assert pace([("x",)], 0) == []


def test_timed_cues_are_read_clipped_and_written_back() -> None:
    srt = (
        "1\n00:00:01,000 --> 00:00:02,500\n<b>Bold</b> {\\an8}move\nsecond\n\n"
        "2\n00:01:00,000 --> 00:01:01,000\nLate\n"
    )
    cues = parse_timed(srt)
    assert cues == [Cue(1000, 2500, ("Bold move", "second")), Cue(60000, 61000, ("Late",))]
    assert clip(cues, 2000) == [Cue(1000, 2000, ("Bold move", "second"))]

    vtt = (
        "WEBVTT - title\n\nSTYLE\n::cue { color: red }\n\nNOTE skip me\n\n"
        "id-1\n01:02.000 --> 01:03.500 align:start\n<v Joe>Hi &lt;there&gt;</v>\n"
    )
    assert parse_timed(vtt) == [Cue(62000, 63500, ("Hi <there>",))]

    written = [Cue(0, 1500, ("a < b & c",)), Cue(3_600_000, 3_601_000, ("late -->",))]
    out_vtt = to_webvtt(written)
    out_srt = to_srt(written)
    assert parse_vtt(out_vtt) == ["a < b & c", "late -->"]
    assert len(parse_srt(out_srt)) == 2
    assert "01:00:00.000 --> 01:00:01.000" in out_vtt
    assert "01:00:00,000 --> 01:00:01,000" in out_srt
    assert parse_timed(out_vtt) == written
