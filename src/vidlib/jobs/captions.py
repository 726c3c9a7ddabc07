"""Caption cues: read timed SRT/WebVTT, pace plain text, write WebVTT and SRT.

Plain text becomes readable cues: at most ``max_lines`` lines of ``max_chars``
characters, ending at sentence ends where the text allows, each shown for a share
of the video's duration proportional to its length. Timed transcripts keep their
timings, clipped to the video's duration.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from vidlib.uploads.transcripts import timed_cues

MAX_CHARS = 42
MAX_LINES = 2

_ASS_OVERRIDE = re.compile(r"\{\\[^}\n]*\}")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


@dataclass(frozen=True, slots=True)
class Cue:
    """One caption: shown from ``start_ms`` to ``end_ms``; ``lines`` of plain text."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The cue's text, lines joined by spaces."""
        return " ".join(self.lines)


# -- reading timed transcripts ---------------------------------------------------------


def parse_timed(text: str) -> list[Cue]:
    """Cues of an SRT or WebVTT text, read by the upload's own parser (the text was
    validated there), as lines of plain text, in time order; empty cues are dropped."""
    cues: list[Cue] = []
    for cue in timed_cues(text.replace("\r\n", "\n").replace("\r", "\n")):
        plain = _ASS_OVERRIDE.sub("", cue.text)
        lines = tuple(line.strip() for line in plain.split("\n") if line.strip())
        if lines and cue.end_ms > cue.start_ms:
            cues.append(Cue(cue.start_ms, cue.end_ms, lines))
    cues.sort(key=lambda c: (c.start_ms, c.end_ms))
    return cues


def clip(cues: list[Cue], duration_ms: int) -> list[Cue]:
    """Cues within ``[0, duration_ms]``: later ones dropped, overhanging ones cut."""
    clipped = []
    for cue in cues:
        end = min(cue.end_ms, duration_ms)
        if cue.start_ms < end:
            clipped.append(Cue(cue.start_ms, end, cue.lines))
    return clipped


# -- pacing plain text ------------------------------------------------------------------


def _words(text: str, max_chars: int) -> list[str]:
    """Words, with any longer than a line cut into line-sized pieces."""
    words: list[str] = []
    for word in text.split():
        while len(word) > max_chars:
            words.append(word[:max_chars])
            word = word[max_chars:]
        if word:
            words.append(word)
    return words


def _wrap(words: list[str], max_chars: int) -> list[str]:
    """Greedy line filling."""
    lines: list[str] = []
    current = ""
    for word in words:
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= max_chars:
            current += " " + word
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _balanced(words: list[str], max_chars: int, max_lines: int) -> tuple[str, ...]:
    """The cue's lines, as even in length as the limit allows (easier to read)."""
    lines = _wrap(words, max_chars)
    if len(lines) != 2 or max_lines < 2:
        return tuple(lines)
    best = tuple(lines)
    best_gap = abs(len(lines[0]) - len(lines[1]))
    for cut in range(1, len(words)):
        first, second = " ".join(words[:cut]), " ".join(words[cut:])
        if len(first) <= max_chars and len(second) <= max_chars:
            gap = abs(len(first) - len(second))
            if gap < best_gap:
                best, best_gap = (first, second), gap
    return best


def _fits(words: list[str], max_chars: int, max_lines: int) -> bool:
    return len(_wrap(words, max_chars)) <= max_lines


def split_text(
    text: str, *, max_chars: int = MAX_CHARS, max_lines: int = MAX_LINES
) -> list[tuple[str, ...]]:
    """Plain text as cue texts of at most ``max_lines`` lines of ``max_chars`` characters.

    A cue ends at a sentence end when the next sentence does not fit in it whole, so
    a cue rarely starts mid-sentence unless the sentence is longer than a cue.
    """
    sentences = [s for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]
    cues: list[list[str]] = []
    current: list[str] = []
    for sentence in sentences:
        words = _words(sentence, max_chars)
        if current and _fits(current + words, max_chars, max_lines):
            current += words
            continue
        if current:
            cues.append(current)
            current = []
        for word in words:
            if current and not _fits([*current, word], max_chars, max_lines):
                cues.append(current)
                current = []
            current.append(word)
    if current:
        cues.append(current)
    return [_balanced(words, max_chars, max_lines) for words in cues]


def pace(texts: list[tuple[str, ...]], duration_ms: int) -> list[Cue]:
    """Cues covering ``[0, duration_ms]``, each lasting in proportion to its length."""
    if not texts or duration_ms <= 0:
        return []
    weights = [sum(len(line) for line in lines) for lines in texts]
    total = sum(weights)
    cues: list[Cue] = []
    elapsed = 0
    start = 0
    for lines, weight in zip(texts, weights, strict=True):
        elapsed += weight
        end = duration_ms * elapsed // total
        if end > start:
            cues.append(Cue(start, end, lines))
            start = end
    return cues


# -- writing ----------------------------------------------------------------------------


def _stamp(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def to_webvtt(cues: list[Cue]) -> str:
    """A WebVTT file."""
    out = ["WEBVTT", ""]
    for number, cue in enumerate(cues, start=1):
        out.append(str(number))
        out.append(f"{_stamp(cue.start_ms, '.')} --> {_stamp(cue.end_ms, '.')}")
        # '&' and '<' start markup in WebVTT; escaping '>' also keeps '-->' out.
        out.extend(html.escape(line, quote=False) for line in cue.lines)
        out.append("")
    return "\n".join(out)


def to_srt(cues: list[Cue]) -> str:
    """A SubRip file."""
    out: list[str] = []
    for number, cue in enumerate(cues, start=1):
        out.append(str(number))
        out.append(f"{_stamp(cue.start_ms, ',')} --> {_stamp(cue.end_ms, ',')}")
        out.extend(line.replace("-->", "->") for line in cue.lines)
        out.append("")
    return "\n".join(out)
