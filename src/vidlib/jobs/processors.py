"""Job processors: a registry keyed by a job's ``kind``, and the built-in ``captions``.

A team plugs in its own pipeline by registering a processor for a new kind in a
module that both the API (to accept the kind) and the worker import::

    from vidlib.jobs.processors import register

    class Dubbing:
        def validate_options(self, options): ...   # raise InvalidOptions for a 400
        async def run(self, ctx): ...              # returns the job's result

    register("dubbing", Dubbing())

``run`` gets a :class:`JobContext`: the job's input, the object store,
``progress(fraction)`` (a checkpoint: it raises :class:`JobCancelled` once the job
was cancelled, and the processor should let it propagate) and ``put_file`` (files
stored there appear in the result's ``files``, with a fresh URL whenever the job is
read).
Raise :class:`JobError` with a sentence for the user to fail the job;
``permanent=False`` asks for a retry with backoff.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from vidlib.jobs import captions
from vidlib.tasks.retry import TaskError
from vidlib.uploads.transcripts import InvalidTranscript

DEFAULT_KIND = "captions"
# Kinds name storage folders (``uploads/users/{user}/{kind}/``), so they stay plain.
KIND_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class JobError(TaskError):
    """The job failed for a reason the user may read; see ``permanent``."""


class JobCancelled(Exception):
    """The job was cancelled (or taken over) while running: stop now."""


class InvalidOptions(ValueError):
    """The job's ``options`` are not valid for its kind; the message is for the client."""


@dataclass(frozen=True, slots=True)
class VideoInput:
    """The job's video, as processing left it."""

    id: uuid.UUID
    user_id: uuid.UUID
    s3_key: str
    filename: str
    content_type: str
    duration: float | None
    metadata: dict[str, Any] | None
    status: str


@dataclass(frozen=True, slots=True)
class TranscriptInput:
    """The job's transcript: the text and its format (``txt``, ``srt`` or ``vtt``)."""

    text: str
    format: str
    source: str


@dataclass(frozen=True, slots=True)
class JobInput:
    """Everything a processor is given about its job."""

    id: uuid.UUID
    kind: str
    title: str | None
    options: dict[str, Any]
    video: VideoInput
    transcript: TranscriptInput | None
    attempt: int


class JobContext(Protocol):
    """What a processor can do while it runs."""

    @property
    def job(self) -> JobInput:
        """The job's input."""
        ...

    def media_source(self) -> str:
        """A path or URL to read the job's video from (ranged reads)."""
        ...

    async def progress(self, fraction: float) -> None:
        """Record progress (0..1); raises :class:`JobCancelled` once cancelled."""
        ...

    async def put_file(self, name: str, data: bytes, *, content_type: str, extension: str) -> str:
        """Store an output file; it appears in ``result.files[name]`` with a URL. Its key."""
        ...


class Processor(Protocol):
    """The work behind one job kind."""

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options to store (normalised), or :class:`InvalidOptions`."""
        ...

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        """Do the job; the returned JSON object becomes the job's ``result``."""
        ...


_registry: dict[str, Processor] = {}


def register(kind: str, processor: Processor, *, replace: bool = False) -> None:
    """Make ``kind`` a job kind handled by ``processor``."""
    if not KIND_PATTERN.fullmatch(kind):
        raise ValueError("a job kind is 1 to 64 of a-z, 0-9, '_' and '-'")
    if kind in _registry and not replace:
        raise ValueError(f"the job kind {kind!r} is already registered")
    _registry[kind] = processor


def unregister(kind: str) -> None:
    """Forget a job kind (tests, plug-in reloads)."""
    _registry.pop(kind, None)


def get_processor(kind: str) -> Processor | None:
    """The processor of a kind, if registered."""
    return _registry.get(kind)


def kinds() -> list[str]:
    """Registered kinds, sorted."""
    return sorted(_registry)


# -- the built-in captions processor ----------------------------------------------------


def _int_option(options: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOptions(f"The option {name} must be a whole number from {low} to {high}.")
    return value


class CaptionsProcessor:
    """WebVTT and SRT captions from the job's transcript, next to the video in storage.

    SRT and WebVTT transcripts keep their timings (clipped to the video); plain text
    is split into cues of at most ``max_lines`` lines of ``max_chars_per_line``
    characters, paced across the video in proportion to their length. Without a
    transcript the job's result is the video's media report.
    """

    OPTIONS = frozenset({"max_chars_per_line", "max_lines"})

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Accepts ``max_chars_per_line`` (20..80, 42) and ``max_lines`` (1..3, 2)."""
        unknown = sorted(set(options) - self.OPTIONS)
        if unknown:
            raise InvalidOptions(
                f"Unknown option for captions jobs: {unknown[0]}; "
                f"accepted: {', '.join(sorted(self.OPTIONS))}."
            )
        _int_option(options, "max_chars_per_line", captions.MAX_CHARS, 20, 80)
        _int_option(options, "max_lines", captions.MAX_LINES, 1, 3)
        return dict(options)

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        """Write the caption files; the result lists their keys and cue count."""
        job = ctx.job
        video = job.video
        report = {"duration": video.duration, "metadata": video.metadata}
        if job.transcript is None:
            return report
        if not video.duration:
            raise JobError("The video's duration is unknown, so captions cannot be timed.")
        duration_ms = round(video.duration * 1000)
        transcript = job.transcript
        if transcript.format == "txt":
            texts = captions.split_text(
                transcript.text,
                max_chars=_int_option(
                    job.options, "max_chars_per_line", captions.MAX_CHARS, 20, 80
                ),
                max_lines=_int_option(job.options, "max_lines", captions.MAX_LINES, 1, 3),
            )
            cues = captions.pace(texts, duration_ms)
        else:
            try:
                cues = captions.clip(captions.parse_timed(transcript.text), duration_ms)
            except InvalidTranscript as exc:  # validated when stored; kept for old rows
                raise JobError(str(exc)) from exc
        if not cues:
            raise JobError("The transcript has no text to show within the video's duration.")
        await ctx.progress(0.4)
        vtt = captions.to_webvtt(cues).encode()
        await ctx.put_file("vtt", vtt, content_type="text/vtt; charset=utf-8", extension="vtt")
        await ctx.progress(0.7)
        srt = captions.to_srt(cues).encode()
        await ctx.put_file(
            "srt", srt, content_type="application/x-subrip; charset=utf-8", extension="srt"
        )
        return {**report, "cues": len(cues), "transcript_format": transcript.format}


register(DEFAULT_KIND, CaptionsProcessor())
