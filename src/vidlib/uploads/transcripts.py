"""Transcript files: decode strictly, recognise the format, validate SRT and WebVTT.

Counting rules (what the API reports):
- ``characters``: for ``.txt`` the length of the whole text; for SRT/WebVTT the
  length of the cue text only (markup tags removed, the lines of one cue joined
  by a newline), summed over cues. Line endings count as one character.
- ``cues``: the number of timed cues; a ``.txt`` file has none, so 0.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

from vidlib.uploads.errors import UnsupportedMedia
from vidlib.uploads.models import TranscriptFormat

MAX_TRANSCRIPT_BYTES = 2 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_SRT_TIME = r"(\d{1,3}):([0-5]\d):([0-5]\d)[,.](\d{3})"
_SRT_TIMING = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s+.*)?$")
_VTT_TIME = r"(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_VTT_TIMING = re.compile(rf"^\s*{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t]+.*)?$")
_TAG = re.compile(r"<[^>\n]*>")
_ASS_OVERRIDE = re.compile(r"\{\\[^}\n]*\}")
_EXTENSIONS = {f".{f.value}": f for f in TranscriptFormat}


class InvalidTranscript(ValueError):
    """The file is not a valid transcript; the message is a sentence for the client."""


@dataclass(frozen=True, slots=True)
class TimedCue:
    """One cue of a SubRip or WebVTT file: its times and its text (markup removed, lines
    joined by newlines)."""

    start_ms: int
    end_ms: int
    text: str


@dataclass(frozen=True, slots=True)
class ParsedTranscript:
    """A validated transcript."""

    format: TranscriptFormat
    text: str
    characters: int
    cues: int


def format_from_name(filename: str | None) -> TranscriptFormat | None:
    """The format an extension names; ``None`` when the name has no extension."""
    name = (filename or "").rsplit("/", 1)[-1]
    if "." not in name.lstrip("."):
        return None
    ext = "." + name.rsplit(".", 1)[1].lower()
    fmt = _EXTENSIONS.get(ext)
    if fmt is None:
        raise UnsupportedMedia("Transcripts must be .txt, .srt or .vtt files.")
    return fmt


def decode(raw: bytes) -> str:
    """Strict UTF-8 (a leading BOM is dropped); line endings become ``\\n``."""
    offset = 0
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
        offset = len(_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTranscript(
            f"The transcript is not valid UTF-8 (invalid byte at offset {exc.start + offset})."
        ) from exc
    if "\x00" in text:
        raise InvalidTranscript("The transcript contains a NUL character.")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_transcript(raw: bytes, filename: str | None) -> ParsedTranscript:
    """Validate a transcript file and count its text and cues."""
    fmt = format_from_name(filename)
    text = decode(raw)
    if not text.strip():
        raise InvalidTranscript("The transcript is empty.")
    if fmt is None:
        fmt = _guess_format(text)
    if fmt is TranscriptFormat.txt:
        return ParsedTranscript(fmt, text, len(text), 0)
    cues = parse_vtt(text) if fmt is TranscriptFormat.vtt else parse_srt(text)
    return ParsedTranscript(fmt, text, sum(len(c) for c in cues), len(cues))


def _guess_format(text: str) -> TranscriptFormat:
    if _is_vtt_signature(text.split("\n", 1)[0]):
        return TranscriptFormat.vtt
    lines = text.lstrip("\n").split("\n", 2)
    if len(lines) >= 2 and lines[0].strip().isdigit() and _SRT_TIMING.match(lines[1]):
        return TranscriptFormat.srt
    return TranscriptFormat.txt


def _blocks(lines: list[str], start: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Runs of non-blank lines: (1-based line number of the first, the lines)."""
    block: list[str] = []
    first = 0
    for number, line in enumerate(lines[start:], start=start + 1):
        if line.strip():
            if not block:
                first = number
            block.append(line)
        elif block:
            yield first, block
            block = []
    if block:
        yield first, block


def _millis(h: str | None, m: str, s: str, ms: str) -> int:
    return ((int(h or 0) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def _times(match: re.Match[str], cue: int, line: int) -> tuple[int, int]:
    start = _millis(*match.group(1, 2, 3, 4))
    end = _millis(*match.group(5, 6, 7, 8))
    if end < start:
        raise InvalidTranscript(f"Cue {cue} (line {line}) ends before it starts.")
    return start, end


def _clean_srt(lines: list[str]) -> str:
    text = "\n".join(lines)
    return _ASS_OVERRIDE.sub("", _TAG.sub("", text))


def timed_cues(text: str) -> list[TimedCue]:
    """The cues of a SubRip or WebVTT text (WebVTT when it starts with its signature),
    in file order; ``InvalidTranscript`` names the first bad cue."""
    first = text.split("\n", 1)[0]
    return vtt_cues(text) if _is_vtt_signature(first) else srt_cues(text)


def parse_srt(text: str) -> list[str]:
    """The cue texts of a SubRip file; ``InvalidTranscript`` names the first bad cue."""
    return [cue.text for cue in srt_cues(text)]


def srt_cues(text: str) -> list[TimedCue]:
    """The cues of a SubRip file; ``InvalidTranscript`` names the first bad cue."""
    cues: list[TimedCue] = []
    for cue, (line, block) in enumerate(_blocks(text.split("\n")), start=1):
        if not block[0].strip().isdigit():
            raise InvalidTranscript(
                f"Cue {cue} (line {line}) does not start with a cue number: {_quote(block[0])}."
            )
        if len(block) < 2:
            raise InvalidTranscript(f"Cue {cue} (line {line}) has no timing line.")
        match = _SRT_TIMING.match(block[1])
        if match is None:
            raise InvalidTranscript(
                f"Cue {cue} (line {line + 1}) has an invalid timing line: {_quote(block[1])}; "
                "expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm'."
            )
        start, end = _times(match, cue, line + 1)
        cues.append(TimedCue(start, end, _clean_srt(block[2:])))
    if not cues:
        raise InvalidTranscript("The SubRip file contains no cues.")
    return cues


def _is_vtt_signature(line: str) -> bool:
    line = line.removeprefix("\ufeff")
    return line == "WEBVTT" or line.startswith(("WEBVTT ", "WEBVTT\t"))


def _is_keyword_block(line: str, keyword: str) -> bool:
    return line == keyword or line.startswith((keyword + " ", keyword + "\t"))


def parse_vtt(text: str) -> list[str]:
    """The cue texts of a WebVTT file; ``InvalidTranscript`` names the first bad cue."""
    return [cue.text for cue in vtt_cues(text)]


def vtt_cues(text: str) -> list[TimedCue]:
    """The cues of a WebVTT file; ``InvalidTranscript`` names the first bad cue."""
    lines = text.split("\n")
    if not _is_vtt_signature(lines[0]):
        raise InvalidTranscript("A WebVTT file must start with the line 'WEBVTT'.")
    # The header runs to the first blank line.
    header_end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    cues: list[TimedCue] = []
    for line, block in _blocks(lines, header_end):
        head = block[0]
        if any(_is_keyword_block(head, k) for k in ("NOTE", "STYLE", "REGION")):
            continue
        cue = len(cues) + 1
        timing_index = 0 if "-->" in head else 1
        if timing_index == 1 and (len(block) < 2 or "-->" not in block[1]):
            raise InvalidTranscript(
                f"Cue {cue} (line {line}) has no timing line ('MM:SS.mmm --> MM:SS.mmm')."
            )
        timing = block[timing_index]
        match = _VTT_TIMING.match(timing)
        if match is None:
            raise InvalidTranscript(
                f"Cue {cue} (line {line + timing_index}) has an invalid timing line: "
                f"{_quote(timing)}; expected '[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm'."
            )
        start, end = _times(match, cue, line + timing_index)
        payload = block[timing_index + 1 :]
        for offset, payload_line in enumerate(payload, start=line + timing_index + 1):
            if "-->" in payload_line:
                raise InvalidTranscript(
                    f"Cue {cue} (line {offset}) has text containing '-->'; "
                    "separate cues with a blank line."
                )
        cues.append(TimedCue(start, end, html.unescape(_TAG.sub("", "\n".join(payload)))))
    if not cues:
        raise InvalidTranscript("The WebVTT file contains no cues.")
    return cues


def _quote(line: str, limit: int = 60) -> str:
    line = line.strip()
    return repr(line if len(line) <= limit else line[:limit] + "…")
